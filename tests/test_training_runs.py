"""How a training run ends in the run log: finished, skipped with its reason, interrupted by
Ctrl-C (never 'failed'), or failed; an unfinished run leaves no adapter folder behind."""

from __future__ import annotations

import pytest

from mkailin.errors import StepSkipped
from mkailin.train import training_run


def _end(lake, exc):
    with pytest.raises(type(exc)):
        with training_run(lake, "train-qg:domain", {"domain": "m"}, "h", 5) as detail:
            d = lake.artifacts_dir / "adapters" / detail["run_id"]
            d.mkdir(parents=True)
            (d / "adapter_config.json").write_text("{}")  # half-written
            raise exc
    (row,) = lake.query("select status, error from runs where stage = 'train-qg:domain'")
    assert not any((lake.artifacts_dir / "adapters").iterdir())
    return row


def test_ctrl_c_is_interrupted_not_failed_and_leaves_no_adapter(lake):
    assert _end(lake, KeyboardInterrupt()) == ("interrupted", "interrupted (Ctrl-C)")


def test_too_little_data_is_skipped_with_its_reason(lake):
    e = StepSkipped("3 rule-labelled pairs, fewer than the 4 a judge needs", "rule labels stand")
    assert _end(lake, e) == ("skipped", str(e))


def test_an_error_is_failed_with_its_message(lake):
    assert _end(lake, RuntimeError("boom")) == ("failed", "RuntimeError: boom")


def test_a_judge_with_too_few_rule_pairs_is_skipped_before_any_model_loads(lake, monkeypatch):
    from mkailin.config import Config
    from mkailin.train import judge

    monkeypatch.setattr(judge, "labelled_pairs", lambda lake, cfg: [{"pmid": 1}, {"pmid": 2}])
    monkeypatch.setattr(judge, "lora_sft", lambda *a, **k: pytest.fail("trained anyway"))
    with pytest.raises(StepSkipped, match=r"2 rule-labelled pairs, fewer than the 4 a judge"):
        judge.train_judge(lake, Config())
    assert lake.query("select status from runs where stage = 'train-judge'") == [("skipped",)]


def test_the_final_agent_uses_its_own_configs_dpo_adapter_on_a_shared_lake(tmp_path):
    """Two configs train DPO on one lake: ``adapter = "auto"`` for the final agent takes the
    newest DPO run of its own config, not the other config's newer one, and falls back to the
    newest run when its config has none."""
    import json

    from mkailin.config import Config
    from mkailin.labels import agent_adapter, dpo_config_hash, question_versions
    from mkailin.lake import Lake
    from mkailin.runs import log_event

    lake = Lake.init(tmp_path / "lake")
    a, b, c = Config(), Config(), Config()
    b.retrieval.k, c.retrieval.k = 8, 2
    model = a.model(a.agent("general").model).model

    def dpo_run(cfg, run_id):
        d = lake.artifacts_dir / "adapters" / run_id
        d.mkdir(parents=True)
        detail = {"adapter": str(d), "base_model": model, "run_id": run_id}
        for event in ("started", "finished"):
            log_event(
                lake,
                run_id,
                "train-dpo:general",
                event,
                config_hash=dpo_config_hash(cfg),
                detail=json.dumps(detail) if event == "finished" else None,
            )

    dpo_run(a, "dpo-a")
    dpo_run(b, "dpo-b")  # newer, another config's
    assert agent_adapter(lake, a, "final").endswith("dpo-a")
    assert agent_adapter(lake, b, "final").endswith("dpo-b")
    assert agent_adapter(lake, c, "final").endswith("dpo-b")  # none of its own: the newest
    assert question_versions(lake, a, "final")[0][0].endswith("+dpo-a")
