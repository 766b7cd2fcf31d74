"""The evaluation blocklist: PMIDs that never enter a corpus.

A blocked article is never a question's source (``generate``), never a retrieval candidate
(``embed`` and the BM25 index leave it out and drop vectors already written for it) and never
in an export, as a source or a context. Which PMIDs are blocked (``[eval]``):

- ``blocklist = "pubmedqa-test"`` (default): the 500 PubMedQA test items (PQA-L ``split='test'``);
- ``blocklist = "pqa-l"``: all 1,000 PQA-L items, for harnesses that score every one of them;
- ``blocklist = "none"``: nothing from PubMedQA;
- ``blocklist_files``: files of extra PMIDs (one per line, ``#`` comments), BioASQ test PMIDs
  for example.

``generate.exclude_eval_articles = false`` turns the whole blocklist off (tests on tiny lakes);
``export.allow_contamination`` keeps blocked records in an export, and its manifest says so.
"""

from __future__ import annotations

from pathlib import Path

from mkailin.config import Config
from mkailin.errors import InputError

BLOCKLISTS = ("pubmedqa-test", "pqa-l", "none")
_MAX_PMID = 2**63 - 1


def read_pmid_file(path: str) -> list[int]:
    """PMIDs from a text file, one per line; blank lines and ``#`` comments are skipped."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{p}: eval.blocklist_files names a file that does not exist") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read the blocklist ({e.strerror})") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        if not (s.isascii() and s.isdigit()) or not 0 < int(s) <= _MAX_PMID:
            raise InputError(f"{p}:{n}: {s[:40]!r} is not a PMID")
        out.append(int(s))
    return out


def blocked_sql(cfg: Config) -> str | None:
    """A query with one column, ``pmid``, of every blocked PMID; None when nothing is blocked."""
    if not cfg.generate.exclude_eval_articles:
        return None
    which = cfg.eval.blocklist
    if which not in BLOCKLISTS:
        raise InputError(f"eval.blocklist must be one of {', '.join(BLOCKLISTS)}, not {which!r}")
    parts = []
    if which == "pubmedqa-test":
        parts.append("select pmid from pubmedqa where split = 'test'")
    elif which == "pqa-l":
        parts.append("select pmid from pubmedqa")
    for f in cfg.eval.blocklist_files:
        pmids = read_pmid_file(f)
        if pmids:
            parts.append(f"select unnest([{', '.join(map(str, pmids))}]::bigint[]) as pmid")
    if not parts:
        return None
    return "select pmid from (" + " union ".join(parts) + ") where pmid is not null"


def not_blocked(cfg: Config, column: str = "pmid") -> str:
    """A SQL condition true for rows whose ``column`` is not blocked."""
    q = blocked_sql(cfg)
    return "true" if q is None else f"{column} not in ({q})"


def describe(cfg: Config) -> str:
    """The blocklist in words, for manifests and messages."""
    if not cfg.generate.exclude_eval_articles:
        return "off (generate.exclude_eval_articles = false)"
    files = [str(f) for f in cfg.eval.blocklist_files]
    return cfg.eval.blocklist + (f" + {', '.join(files)}" if files else "")
