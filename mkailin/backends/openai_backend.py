"""The ``openai`` backend: any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama)
through the ``openai`` client, with async concurrency under a limit, retries with backoff on
429 (honouring Retry-After), 5xx, timeouts, dropped connections and malformed responses, and
token usage and cost counted once per successful call."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Sequence
from pathlib import Path

from mkailin.backends.base import (
    Generation,
    Generator,
    GenParams,
    Prompt,
    UsageCounter,
    _cut_at_stop,
    cost,
)
from mkailin.config import ModelSpec
from mkailin.errors import BackendError, MissingDependencyError
from mkailin.secrets import remember

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def api_key(spec: ModelSpec) -> str:
    """The key from the environment variable the spec names, else from the system keyring
    (service ``mkailin``, user = that variable's name; with the optional ``keyring`` package:
    ``keyring set mkailin OPENAI_API_KEY``). Keys never come from config files or the lake;
    servers on loopback need none."""
    key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
    if not key and spec.api_key_env:
        key = _keyring_key(spec.api_key_env)
    if key:
        check_approved(spec)
    if not key:
        if spec.base_url and ("127.0.0.1" in spec.base_url or "localhost" in spec.base_url):
            return "not-needed"
        if not spec.base_url:
            raise BackendError(
                f"no API key: set the environment variable {spec.api_key_env} "
                f"(or store it with `keyring set mkailin {spec.api_key_env}`)"
            )
        return "not-needed"
    remember(key)
    return key


STANDARD_HOSTS = {"OPENAI_API_KEY": "api.openai.com"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def approved_hosts() -> set[str]:
    """Hosts the user approved for keys, in their own settings: ``MKAILIN_APPROVED_HOSTS``
    (comma-separated) and ``~/.config/mkailin/approved_hosts`` (one a line). An entry is a host
    (any variable may go there) or ``VARIABLE@host``. A project config cannot add to it."""
    out = {h.strip() for h in os.environ.get("MKAILIN_APPROVED_HOSTS", "").split(",") if h.strip()}
    f = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "mkailin"
    try:
        out |= {ln.strip() for ln in (f / "approved_hosts").read_text().splitlines() if ln.strip()}
    except OSError:
        pass
    return out


def check_approved(spec: ModelSpec) -> None:
    """A key goes only to its standard host (OPENAI_API_KEY to api.openai.com), to loopback, or
    to a host the user approved (:func:`approved_hosts`); never because a config names a host."""
    from urllib.parse import urlsplit

    from mkailin.secrets import redact

    var = spec.api_key_env
    # with no server named, the openai client's own default
    url = spec.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK or STANDARD_HOSTS.get(var) == host:
        return
    ok = approved_hosts()
    if host in ok or f"{var}@{host}" in ok:
        return
    raise BackendError(
        f"the config sends ${var} to {redact(spec.base_url or host)}, a host you have not "
        f"approved: if you mean it, add {host} (or {var}@{host}) to MKAILIN_APPROVED_HOSTS or "
        "~/.config/mkailin/approved_hosts; nothing was sent"
    )


def _keyring_key(name: str) -> str:
    try:
        import keyring
    except ImportError:
        return ""
    try:
        return keyring.get_password("mkailin", name) or ""
    except Exception:  # no usable keyring backend on this machine
        return ""


def _retry_after(exc) -> float | None:
    resp = getattr(exc, "response", None)
    if resp is None:
        return None
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class OpenAIGenerator(Generator):
    """Chat completions against any OpenAI-compatible server."""

    backoff_base = 0.5  # seconds; doubles per retry, with jitter, capped at backoff_max
    backoff_max = 20.0

    def __init__(self, spec: ModelSpec, name: str = "", adapter: str = ""):
        try:
            import openai  # noqa: F401
        except ImportError:
            raise MissingDependencyError("openai", None, "the openai backend") from None
        self.spec = spec
        self.model_id = name or spec.model
        self.usage = UsageCounter()
        self._rng = random.Random(0)

    def _client(self):
        import openai

        return openai.AsyncOpenAI(
            base_url=self.spec.base_url or None,
            api_key=api_key(self.spec),
            max_retries=0,
            timeout=self.spec.timeout,
        )

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        return _run_async(self._generate_all(list(prompts), params))

    async def _generate_all(self, prompts: list[Prompt], params: GenParams) -> list[Generation]:
        sem = asyncio.Semaphore(max(1, self.spec.max_concurrency))
        async with self._client() as client:
            out = list(await asyncio.gather(*(self._one(client, sem, p, params) for p in prompts)))
        codes = {g.error.split(":", 1)[0] for g in out if g.error}
        if len(out) >= 3 and all(g.error for g in out) and len(codes) == 1:
            # the same 4xx for every row is the server's answer to the request, not to a row
            raise BackendError(
                f"{self._host()}: every request of a batch got {out[0].error}; the stage stops "
                "and its rows stay to do (nothing was quarantined)"
            )
        return out

    def _host(self) -> str:
        from mkailin.secrets import redact

        return redact(self.spec.base_url or "OpenAI")

    def _wait(self, attempt: int, exc) -> float:
        hinted = _retry_after(exc)
        if hinted is not None:
            return min(hinted, self.backoff_max)
        base = min(self.backoff_base * (2**attempt), self.backoff_max)
        return base * (0.5 + self._rng.random() / 2)

    async def _one(self, client, sem, prompt: Prompt, params: GenParams) -> Generation:
        import openai

        messages = prompt if not isinstance(prompt, str) else [{"role": "user", "content": prompt}]
        kw = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        if params.stop:
            kw["stop"] = list(params.stop)
        last = None
        for attempt in range(self.spec.max_retries + 1):
            async with sem:
                try:
                    resp = await client.chat.completions.create(**kw)
                    choice = resp.choices[0]
                    text = choice.message.content or ""
                    u = resp.usage
                    pt = int(getattr(u, "prompt_tokens", 0) or 0) if u else 0
                    ct = int(getattr(u, "completion_tokens", 0) or 0) if u else 0
                    g = Generation(
                        text=_cut_at_stop(text, params.stop).strip(),
                        prompt_tokens=pt,
                        completion_tokens=ct,
                        cost_usd=cost(self.spec, pt, ct),
                        attempts=attempt + 1,
                    )
                    self.usage.add(g)
                    return g
                except openai.APIStatusError as e:
                    last = e
                    if e.status_code in (401, 403):  # the key, not the row: stop the stage
                        raise BackendError(
                            f"{self._host()}: HTTP {e.status_code} "
                            f"({'authentication' if e.status_code == 401 else 'permission'} "
                            f"failed): check the key in ${self.spec.api_key_env or '(none)'}; "
                            "the stage stops and its rows stay to do (nothing was quarantined)"
                        ) from None
                    if e.status_code not in RETRYABLE_STATUS:
                        return Generation(
                            text="",
                            error=f"HTTP {e.status_code}: {_short(e)}",
                            attempts=attempt + 1,
                        )
                except (openai.APITimeoutError, openai.APIConnectionError) as e:
                    last = e
                except (
                    openai.APIResponseValidationError,
                    ValueError,
                    KeyError,
                    IndexError,
                    TypeError,
                    AttributeError,
                ) as e:
                    last = e  # malformed or truncated body
            if attempt < self.spec.max_retries:
                await asyncio.sleep(self._wait(attempt, last))
        raise BackendError(
            f"{self.spec.base_url or 'OpenAI'}: gave up after {self.spec.max_retries + 1} attempts:"
            f" {type(last).__name__}: {_short(last)}"
        )


def _short(e) -> str:
    return (str(e).splitlines() or [""])[0][:300]


def _run_async(coro):
    """Run a coroutine from sync code, also when an event loop is already running (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict = {}

    def target():
        box["v"] = asyncio.run(coro)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    return box["v"]
