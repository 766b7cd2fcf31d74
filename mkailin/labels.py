"""The labels that join one stage's output to the next: which model and prompt wrote a question,
which encoder and retriever wrote a context, which scorer scored a pair. They live here, on the
ground floor, so that stages can name each other's outputs without importing each other's code.

A question's identity is (agent, model, prompt version), where the model label names the
adapter chain it ran with: two configs that differ in a question model, adapter or prompt write
separate question rows, and each downstream step reads its own config's rows
(:func:`questions_where`)."""

from __future__ import annotations

from mkailin.config import Config, EncoderSpec
from mkailin.errors import InputError

# which training run's adapter an agent uses when its adapter setting is "auto"
ADAPTER_STAGE = {
    "domain": "train-qg:domain",
    "general": "train-qg:general",
    "final": "train-dpo:general",
}
HEURISTIC_VERSION = ("title-rule", "title-rule-v1")  # the heuristic agent's (model, prompt)


def dpo_config_hash(cfg: Config) -> str:
    """What a DPO run records as its config: the sections that shape its preference set and
    training. The final agent's ``auto`` adapter is the newest DPO run with this hash, so two
    configs sharing a lake each use their own DPO adapter."""
    return cfg.hash("train", "preference", "retrieval", "generate", "agents", "models")


def agent_adapter(lake, cfg: Config, agent: str) -> str:
    """The adapter chain ``agent`` runs with under ``cfg`` ('' for the base model)."""
    from mkailin.artifacts import resolve_adapter

    spec_agent = cfg.agent("general" if agent == "final" else agent)
    spec = cfg.model(spec_agent.model)
    config_hash = dpo_config_hash(cfg) if agent == "final" else None
    return resolve_adapter(lake, spec_agent.adapter, ADAPTER_STAGE[agent], spec.model, config_hash)


def model_label(model_name: str, adapter: str) -> str:
    """A question model as recorded in ``questions.model``: the config's model name, and the
    last adapter of its chain (``smollm2+<run id>``)."""
    return model_name + (f"+{adapter.split('/')[-1]}" if adapter else "")


def question_versions(lake, cfg: Config, agent: str) -> list[tuple[str, str]]:
    """The (model label, prompt version) pairs of ``agent``'s questions under ``cfg``. The final
    agent has two: the DPO-tuned generator's, and the general generator's own (which
    ``select-final-generator`` keeps as the final questions when DPO did worse)."""
    if agent == "heuristic":
        return [HEURISTIC_VERSION]
    spec_agent = cfg.agent("general" if agent == "final" else agent)
    out = [(model_label(spec_agent.model, agent_adapter(lake, cfg, agent)), spec_agent.prompt)]
    if agent == "final":
        out += [v for v in question_versions(lake, cfg, "general") if v not in out]
    return out


def questions_where(
    lake, cfg: Config, agents: tuple[str, ...], alias: str = "q"
) -> tuple[str, list]:
    """The questions rows of ``agents`` written under ``cfg`` (their models, adapters and
    prompts): SQL over ``questions as <alias>``, and its parameters. Rows that record no model
    or prompt (written before questions carried them) count as any config's."""
    a = f"{alias}." if alias else ""
    parts, params = [], []
    for agent in agents:
        versions = question_versions(lake, cfg, agent)
        same = " or ".join(f"({a}model = ? and {a}prompt_version = ?)" for _ in versions)
        parts.append(
            f"({a}agent = ? and ({a}model is null or {a}prompt_version is null or {same}))"
        )
        params += [agent, *(x for v in versions for x in v)]
    return ("(" + " or ".join(parts) + ")" if parts else "false"), params


def question_keys(lake, cfg: Config, agents: tuple[str, ...]) -> list[str]:
    """The same selection as ``agent|model|prompt_version`` strings, for the SQL macros'
    ``versions`` argument (pair_scores_with, rule_preferences_with); ``agent|*`` takes the
    agent's rows that record no model or prompt."""
    return [
        key
        for agent in agents
        for key in (
            *(f"{agent}|{m}|{p}" for m, p in question_versions(lake, cfg, agent)),
            f"{agent}|*",
        )
    ]


def encoder_for(cfg: Config, role: str | None = None) -> tuple[str, EncoderSpec]:
    """The encoder a retrieval role uses: (its name in the config, its spec)."""
    role = role or cfg.retrieval.encoder
    if role not in ("domain", "general"):
        raise InputError(f"encoder role must be domain or general, not {role!r}")
    name = cfg.retrieval.domain_encoder if role == "domain" else cfg.retrieval.general_encoder
    return name, cfg.encoder(name)


def retriever_label(cfg: Config, method: str | None = None) -> str:
    """``bm25``, or ``<method>:<encoder name>`` (``dense:minilm``, ``hybrid:minilm``)."""
    method = method or cfg.retrieval.retriever
    name, _ = encoder_for(cfg)
    return "bm25" if method == "bm25" else f"{method}:{name}"


def contexts_where(cfg: Config, alias: str = "c") -> tuple[str, list]:
    """The contexts rows of the configured retriever and k: SQL over ``contexts as <alias>``, and
    its parameters. Rows written before ``top_k`` was recorded count as any k."""
    a = alias
    sql = f"{a}.retriever = ? and coalesce({a}.top_k, ?) = ? and {a}.rank <= ?"
    k = cfg.retrieval.k
    return sql, [retriever_label(cfg), k, k, k]


def scorer_label(cfg: Config) -> str:
    """The MeSH scorer a rule preference was made with: measure/IC, aggregate, top-k."""
    p = cfg.preference
    base = p.scorer if p.scorer.startswith("kailin") else f"{p.scorer}/{p.ic}"
    return f"{base}/{p.aggregate}/top{cfg.retrieval.k}"
