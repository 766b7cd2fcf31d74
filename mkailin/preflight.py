"""Checks a command makes before it loads a model: is there anything for it to work on?

A model stage over an empty input would load its model (a minute for an encoder on a laptop),
find 0 rows to do and exit 0. These checks read the lake only and raise a named error that says
which command fills the missing input.
"""

from __future__ import annotations

from mkailin.errors import QueryError, StageError
from mkailin.lake import Lake


def _count(lake: Lake, relation: str, where: str = "true", params: list | None = None) -> int:
    """Rows of a table or view that match; 0 when the lake does not hold the relation."""
    try:
        return lake.query(f"select count(*) from {relation} where {where}", params or [])[0][0]
    except QueryError:  # a lake made before the relation existed
        return 0


def need_articles(lake: Lake) -> None:
    """Question generation reads abstracts."""
    if not _count(lake, "articles", "abstract is not null and abstract <> ''"):
        raise StageError(
            "the lake has no articles with abstracts: run `mkailin ingest pubmed FILE` or "
            "`mkailin ingest pubmedqa FILE` first"
        )


def need_questions(lake: Lake, agents: tuple[str, ...] = (), cfg=None) -> None:
    """Retrieval needs questions (of the chosen agents, written under ``cfg`` when given) and the
    articles to retrieve from."""
    where, params = "question is not null and question <> ''", []
    if agents and cfg is not None:
        from mkailin.labels import questions_where

        mine, params = questions_where(lake, cfg, agents, alias="")
        where += f" and {mine}"
    elif agents:
        where += " and agent in (" + ", ".join("?" * len(agents)) + ")"
        params = list(agents)
    if not _count(lake, "questions", where, params):
        if agents:
            which = "the agent" + ("s " if len(agents) > 1 else " ") + ", ".join(agents)
            flags = " ".join(f"--agent {a}" for a in agents)
            raise StageError(
                f"the lake has no questions of {which}: run "
                f"`mkailin generate questions {flags}` first"
            )
        raise StageError("the lake has no questions: run `mkailin generate questions` first")
    if not _count(lake, "articles"):
        raise StageError(
            "the lake has no articles to retrieve from: run `mkailin ingest pubmed FILE` first"
        )


def need_contexts(lake: Lake, retriever: str) -> None:
    """The judges compare question-context pairs from one retriever (``retriever`` is its label,
    such as ``dense:minilm``)."""
    if not _count(lake, "contexts"):
        raise StageError("the lake has no contexts: run `mkailin retrieve` first")
    if not _count(lake, "contexts", "retriever = ?", [retriever]):
        have = [r for (r,) in lake.query("select distinct retriever from contexts order by 1")]
        method = retriever.split(":", 1)[0]
        raise StageError(
            f"the lake has no contexts from the retriever {retriever} (it has: "
            f"{', '.join(have)}): run `mkailin retrieve --retriever {method}` first"
        )
