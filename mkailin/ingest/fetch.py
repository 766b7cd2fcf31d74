"""Download the public inputs from their official locations.

- PubMed baseline and update files from NLM (``.xml.gz``, each checked against its ``.md5``);
- MeSH descriptor XML from NLM;
- PubMedQA PQA-L and its test ground truth from the PubMedQA repository.

Downloads go to a temp name and are renamed when complete, so a killed fetch resumes by
skipping finished files. ``base_url`` points any source at a mirror (or a loopback server in
tests). BioASQ needs a registered account and is not fetched.
"""

from __future__ import annotations

import hashlib
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mkailin.errors import DownloadError, InputError

PUBMED_BASE = "https://ftp.ncbi.nlm.nih.gov/pubmed/"
MESH_BASE = "https://nlmpubs.nlm.nih.gov/projects/mesh/MESH_FILES/xmlmesh/"
PUBMEDQA_BASE = "https://raw.githubusercontent.com/pubmedqa/pubmedqa/master/data/"
SOURCES = ("pubmedqa", "mesh", "baseline", "updates")
_PUBMED_FILE = re.compile(r'href="(pubmed\d+n\d+\.xml\.gz)"')
USER_AGENT = "mkailin-fetch/0.1"
BACKOFF_SECONDS = 1.0  # first retry delay; doubles, capped at 10 s


@dataclass
class Fetched:
    path: Path
    url: str
    bytes: int
    skipped: bool


def _open(url: str, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(req, timeout=timeout)


def _get(url: str, timeout: float, retries: int = 3) -> bytes:
    for attempt in range(retries + 1):
        try:
            with _open(url, timeout) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code != 429 or attempt == retries:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            if attempt == retries:
                reason = getattr(e, "reason", e)
                raise DownloadError(
                    f"cannot reach {url} ({reason}); if this machine is offline, use local files "
                    "(for the demo: mkailin demo --data DIR)"
                ) from None
        time.sleep(min(BACKOFF_SECONDS * 2**attempt, 10))
    raise AssertionError("unreachable")


def download(
    url: str, dest: Path, timeout: float = 60, md5: str | None = None, retries: int = 3
) -> Fetched:
    """Fetch ``url`` to ``dest`` atomically; skip when ``dest`` exists (and matches ``md5``)."""
    if dest.exists() and (md5 is None or _md5(dest) == md5):
        return Fetched(dest, url, dest.stat().st_size, True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.part"
    for attempt in range(retries + 1):
        try:
            with _open(url, timeout) as r, open(tmp, "wb") as out:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    out.write(chunk)
            if md5 is not None and _md5(tmp) != md5:
                raise DownloadError(f"{url}: checksum mismatch (expected md5 {md5})")
            tmp.replace(dest)
            return Fetched(dest, url, dest.stat().st_size, False)
        except urllib.error.HTTPError as e:
            tmp.unlink(missing_ok=True)
            if e.code < 500 and e.code != 429 or attempt == retries:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            tmp.unlink(missing_ok=True)
            if attempt == retries:
                reason = getattr(e, "reason", e)
                raise DownloadError(
                    f"cannot reach {url} ({reason}); if this machine is offline, use local files "
                    "(for the demo: mkailin demo --data DIR)"
                ) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        time.sleep(min(BACKOFF_SECONDS * 2**attempt, 10))
    raise AssertionError("unreachable")


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _parse_md5(text: str) -> str:
    # NLM writes "MD5(pubmed25n0001.xml.gz)= 0123abcd..."; coreutils writes "0123abcd...  name"
    m = re.search(r"\b([0-9a-f]{32})\b", text)
    if not m:
        raise DownloadError(f"unreadable md5 file: {text[:80]!r}")
    return m.group(1)


def list_pubmed(kind: str, base_url: str = PUBMED_BASE, timeout: float = 60) -> list[str]:
    folder = {"baseline": "baseline/", "updates": "updatefiles/"}[kind]
    index = _get(base_url.rstrip("/") + "/" + folder, timeout).decode("utf-8", "replace")
    return sorted(set(_PUBMED_FILE.findall(index)))


def fetch(
    source: str,
    dest: str | Path,
    base_url: str | None = None,
    limit: int = 0,
    mesh_year: int = 2025,
    timeout: float = 60,
    on_file: Callable[[Fetched], None] | None = None,
) -> list[Fetched]:
    """Download one public source into ``dest``. ``limit`` caps PubMed files (0 = all)."""
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest}: exists and is not a folder")
    out: list[Fetched] = []

    def got(f: Fetched):
        out.append(f)
        if on_file:
            on_file(f)

    if source == "pubmedqa":
        base = (base_url or PUBMEDQA_BASE).rstrip("/") + "/"
        for name in ("ori_pqal.json", "test_ground_truth.json"):
            got(download(base + name, dest / "pubmedqa" / name, timeout))
    elif source == "mesh":
        base = (base_url or MESH_BASE).rstrip("/") + "/"
        name = f"desc{mesh_year}.gz"
        got(download(base + name, dest / "mesh" / name, timeout))
    else:
        base = (base_url or PUBMED_BASE).rstrip("/") + "/"
        folder = {"baseline": "baseline/", "updates": "updatefiles/"}[source]
        names = list_pubmed(source, base, timeout)
        if not names:
            raise DownloadError(f"{base}{folder}: no pubmed*.xml.gz files listed")
        if limit:
            names = names[:limit]
        for name in names:
            md5 = _parse_md5(
                _get(base + folder + name + ".md5", timeout).decode("ascii", "replace")
            )
            got(download(base + folder + name, dest / "pubmed" / source / name, timeout, md5=md5))
    return out
