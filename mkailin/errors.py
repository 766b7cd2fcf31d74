"""Named errors. The CLI turns every one of them into ``Error: …`` and a non-zero exit."""

import errno
import re

# faults of the machine, not of an input: they stop a command (one Error line), never one file
ENV_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an input/output error on the device",
}


_REASONS = (
    ("http_429", re.compile(r"HTTP 429")),
    ("http_5xx", re.compile(r"HTTP 5\d\d")),
    ("http_4xx", re.compile(r"HTTP 4\d\d")),
    ("timeout", re.compile(r"(?i)time ?out|timed out")),
    ("connection", re.compile(r"(?i)connection")),
    (
        "model_output",
        re.compile(r"(?i)no usable|empty (answer|output|question)|unparsed|not a question"),
    ),
    ("malformed", re.compile(r"(?i)malformed|not valid|truncated|invalid|unreadable")),
    ("identifier", re.compile(r"(?i)\bPMID\b|descriptor UI|MeSH name")),
    ("limit", re.compile(r"(?i)past the|cap of|larger than")),
)


def reason_class(error: str | None) -> str:
    """The class of a quarantined row's error, what ``mkailin retry --reason`` selects by:
    http_429, http_5xx, http_4xx, timeout, connection, model_output, malformed, identifier,
    limit, or other."""
    for name, pattern in _REASONS:
        if error and pattern.search(error):
            return name
    return "other"


def is_env_fault(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in ENV_FAULTS


class MkailinError(Exception):
    """Base class of every error a user can cause or fix."""


class LakeError(MkailinError):
    """The lake folder is missing, damaged, or not a lake."""


class LakeLockedError(LakeError):
    """Another process holds the lake's write lock."""


class ConfigError(MkailinError, ValueError):
    """The configuration file has an unknown key, a wrong type, or a bad value."""


class InputError(MkailinError, ValueError):
    """An input file is missing, empty, or not in the expected format."""


class UnknownTableError(MkailinError, KeyError):
    """A table name that the lake does not hold."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message plain
        return str(self.args[0]) if self.args else ""


class QueryError(MkailinError):
    """A SQL query failed."""


class MissingDependencyError(MkailinError, ImportError):
    """An optional package that this step needs is not installed."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = ""):
        self.package = package
        hint = f"pip install 'mkailin[{extra}]'" if extra else f"pip install {package}"
        what = f" for {purpose}" if purpose else ""
        super().__init__(f"the package '{package}' is needed{what}; install it with: {hint}")


class ModelError(MkailinError):
    """A model could not be found, loaded, or run."""


class BackendError(MkailinError):
    """A generation or embedding backend failed after its retries."""


class StageError(MkailinError):
    """A stage could not run (bad input query, a missing upstream table, a failed batch)."""


class DownloadError(MkailinError):
    """A download failed, or the network is not reachable."""


class StepSkipped(MkailinError):
    """A step had too little usable data to do its job; it is recorded as skipped."""

    def __init__(self, reason: str, fallback: str = ""):
        self.reason, self.fallback = reason, fallback
        super().__init__(reason + (f"; {fallback}" if fallback else ""))
