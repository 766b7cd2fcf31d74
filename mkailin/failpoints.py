"""Failpoints: named places where the reliability tests pause a process, to kill it there.

``MKAILIN_FAILPOINT=parquet-write:2.0`` makes every Parquet part write sleep 2 s after the temp
file is written and before it is renamed into place. Unset (always, outside the tests), a
failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import time


def _parse(value: str) -> dict[str, float]:
    out = {}
    for item in filter(None, value.split(",")):
        name, _, secs = item.partition(":")
        out[name.strip()] = float(secs or 1.0)
    return out


_ACTIVE = _parse(os.environ.get("MKAILIN_FAILPOINT", ""))


def hit(name: str) -> None:
    delay = _ACTIVE.get(name)
    if delay:
        time.sleep(delay)
