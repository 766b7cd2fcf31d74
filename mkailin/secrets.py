"""Keeping secrets out of what mkailin writes and prints.

:func:`redact` replaces, in any text: every API key value handed to a client in this process
(:func:`remember`), the value of every environment variable whose name says it is a secret
(``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``), the user-info of URLs
(``http://user:pass@host`` -> ``http://[redacted]@host``), and bearer tokens. The lake applies
it to every row written to ``quarantine`` and ``run_events`` (errors, excerpts, details), the
CLI to every ``Error:`` line, and exports to their manifests.
"""

from __future__ import annotations

import os
import re

MASK = "[redacted]"
_MIN = 6  # shorter values are too common to be worth masking (and are not real keys)
_KNOWN: set[str] = set()
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.I)
_USERINFO = re.compile(r"(?<=://)[^/@\s'\"]+@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}")


def remember(value: str | None) -> None:
    """A key value this process sends somewhere: never written or printed from now on."""
    if value and len(value) >= _MIN:
        _KNOWN.add(value)


def _secrets() -> list[str]:
    env = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= _MIN}
    return sorted(_KNOWN | env, key=len, reverse=True)


def redact(text):
    """``text`` with every secret masked; anything that is not a string comes back as it is."""
    if not isinstance(text, str) or not text:
        return text
    for v in _secrets():
        if v in text:
            text = text.replace(v, MASK)
    text = _USERINFO.sub(MASK + "@", text)
    return _BEARER.sub(r"\1" + MASK, text)
