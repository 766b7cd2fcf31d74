"""Versioned prompt templates. A template id is stored with every row it produced
(``questions.prompt_version``), so a change of wording is a new id, never an edit in place."""

from __future__ import annotations

from dataclasses import dataclass

from mkailin.errors import ConfigError


@dataclass(frozen=True)
class Template:
    id: str
    system: str
    user: str  # str.format fields: abstract, title, question, contexts, ...

    def messages(self, **fields) -> list[dict]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": self.user.format(**fields)}]

    def instruction_text(self) -> str:
        """The fixed words of the template (used to spot outputs that echo the prompt)."""
        import string

        literal = "".join(t for t, *_ in string.Formatter().parse(self.user))
        return f"{self.system}\n{literal}"


TEMPLATES: dict[str, Template] = {
    t.id: t
    for t in [
        Template(
            "qg-domain-v1",
            "You are a biomedical expert who writes precise exam questions about research abstracts.",
            "Write one question that the following PubMed abstract answers. Use its biomedical "
            "terms. Reply with the question only.\n\nAbstract:\n{abstract}",
        ),
        Template(
            "qg-general-v1",
            "You are a helpful assistant.",
            "Read this text and write one question about it. Reply with the question only."
            "\n\nText:\n{abstract}",
        ),
        Template(
            "answer-v1",
            "You are a biomedical expert. Answer using the given contexts.",
            "Contexts:\n{contexts}\n\nQuestion: {question}\n\nAnswer in two or three sentences.",
        ),
        Template(
            "judge-v1",
            "You compare two questions written for the same biomedical abstract.",
            "Abstract:\n{abstract}\n\nQuestion 1: {q1}\nContexts retrieved for question 1:\n"
            "{contexts1}\n\nQuestion 2: {q2}\nContexts retrieved for question 2:\n{contexts2}\n\n"
            "Which question, with its contexts, is closer to the abstract's topic? Answer 1 or 2.",
        ),
        Template(
            "pubmedqa-reasoning-required-v1",
            "",
            "Context: {contexts}\n\nQuestion: {question}\n\nAnswer with yes, no or maybe.\nAnswer:",
        ),
        Template(
            # PubMedQA's reasoning-free setting: the long answer (the abstract's conclusion) is
            # the context, framed as in reasoning-required so that only the context differs
            "pubmedqa-reasoning-free-v1",
            "",
            "Context: {long_answer}\n\nQuestion: {question}\n\nAnswer with yes, no or maybe."
            "\nAnswer:",
        ),
        Template(
            "pubmedqa-question-only-v1",
            "",
            "Question: {question}\n\nAnswer with yes, no or maybe.\nAnswer:",
        ),
    ]
}


def template(template_id: str) -> Template:
    try:
        return TEMPLATES[template_id]
    except KeyError:
        raise ConfigError(
            f"unknown prompt template {template_id!r} (have: {', '.join(sorted(TEMPLATES))})"
        ) from None
