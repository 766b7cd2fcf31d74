"""Run ids: one recipe for every stage, training run and export."""

from __future__ import annotations

import time
import uuid


def new_run_id(stage: str) -> str:
    """``<stage>-<YYYYmmdd-HHMMSS>-<6 hex>``, with ``:`` in the stage name turned to ``-``."""
    return f"{stage.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
