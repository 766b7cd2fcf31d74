"""Trained artifacts (LoRA adapters, judge checkpoints) under ``lake/artifacts``, found through
the runs log: a training run records its adapter folder (relative to the lake) and base model
in ``runs.detail``."""

from __future__ import annotations

import json
from pathlib import Path

from mkailin.lake import Lake


def artifact_dir(lake: Lake, kind: str, run_id: str) -> Path:
    d = lake.artifacts_dir / kind / run_id
    d.mkdir(parents=True, exist_ok=True)
    return d


def latest(
    lake: Lake, stage: str, base_model: str | None = None, config_hash: str | None = None
) -> dict | None:
    """The ``detail`` of the newest finished run of ``stage`` whose artifact still exists; with
    ``config_hash``, the newest run trained under that config first (another config's newer
    run on a shared lake is taken only when this config has none)."""
    rows = lake.query(
        "select detail from runs where stage = ? and status = 'finished' and detail is not null "
        "order by coalesce(config_hash = ?, false) desc, finished desc",
        [stage, config_hash],
    )
    for (detail,) in rows:
        d = json.loads(detail)
        path = d.get("adapter") or d.get("path")
        if not path or not lake.resolve(path).exists():
            continue
        if base_model is not None and d.get("base_model") not in (None, base_model):
            continue
        # paths are kept relative to the lake (older runs: absolute); hand them out absolute
        for key in ("adapter", "path"):
            if d.get(key):
                d[key] = str(lake.resolve(d[key]))
        d["base_adapters"] = [str(lake.resolve(a)) for a in d.get("base_adapters", [])]
        return d
    return None


def resolve_adapter(
    lake: Lake, setting: str, stage: str, base_model: str, config_hash: str | None = None
) -> str:
    """An agent's ``adapter`` setting as a chain of adapter paths ('' for the base model).

    ``auto`` takes the newest adapter trained by ``stage`` for ``base_model`` (with the adapters
    it was trained on top of), the newest trained under ``config_hash`` first when given;
    ``none`` the base model; anything else is a path.
    """
    if setting in ("", "none"):
        return ""
    if setting != "auto":
        return setting
    d = latest(lake, stage, base_model, config_hash)
    if d is None:
        return ""
    return "+".join([*d.get("base_adapters", []), d["adapter"]])
