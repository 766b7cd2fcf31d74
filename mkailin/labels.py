"""The labels that join one stage's output to the next: which encoder and retriever wrote a
context, which scorer scored a pair. They live here, on the ground floor, so that stages can
name each other's outputs without importing each other's code."""

from __future__ import annotations

from mkailin.config import Config, EncoderSpec
from mkailin.errors import InputError


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
    base = "kailin" if p.scorer == "kailin" else f"{p.scorer}/{p.ic}"
    return f"{base}/{p.aggregate}/top{cfg.retrieval.k}"
