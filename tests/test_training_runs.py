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
