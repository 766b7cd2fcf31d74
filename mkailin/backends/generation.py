"""Text generation behind one small interface, with three backends.

- ``transformers``: batched, CPU or GPU, GGUF through ``gguf_file=``, chat templates, LoRA
  adapters through peft, and log-likelihood scoring of fixed choices;
- ``vllm``: the same on vLLM (optional extra, imported lazily);
- ``openai``: any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama) through the
  ``openai`` client, with async concurrency under a limit, retries with backoff on 429 (honouring
  Retry-After), 5xx, timeouts, dropped connections and malformed responses, and token usage and
  cost counted once per successful call.

A prompt is a list of chat messages (``[{"role": "user", "content": ...}]``) or a plain string.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mkailin.backends import native_bf16, resolve_model_path
from mkailin.config import ModelSpec
from mkailin.errors import BackendError, MissingDependencyError, ModelError

Prompt = list[dict] | str


@dataclass
class GenParams:
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None  # a per-request failure (the row is quarantined, the run goes on)
    attempts: int = 1


@dataclass
class UsageCounter:
    """Thread-safe running totals of one generator's calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, g: Generation) -> None:
        with self._lock:
            self.prompt_tokens += g.prompt_tokens
            self.completion_tokens += g.completion_tokens
            self.cost_usd += g.cost_usd
            self.calls += 1
            self.retries += g.attempts - 1


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    for s in stop:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    return text


def cost(spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * spec.price_input + completion_tokens * spec.price_output) / 1e6


class Generator:
    """The interface every backend implements."""

    model_id: str
    spec: ModelSpec

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        raise NotImplementedError

    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[list[float]]:
        """Log-likelihood of each choice as the answer to each prompt."""
        raise NotImplementedError(f"{type(self).__name__} cannot score choices")


# ------------------------------------------------------------------------------ transformers
_MODEL_CACHE: dict[tuple, tuple] = {}
_CACHE_LOCK = threading.Lock()


def _device(spec_device: str) -> str:
    import torch

    if spec_device != "auto":
        return spec_device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(spec_dtype: str, device: str, training: bool = False):
    """The torch dtype to load weights in. "auto": bfloat16 on CUDA, float32 on the CPU.
    "auto-bf16": bfloat16 also on CPUs that multiply it natively (about twice the speed of
    float32 there, but results then move with batch composition by more than float32's
    rounding). CPU training always loads float32 weights (see ``train.precision_args``).
    """
    import torch

    cpu = not device.startswith("cuda")
    if cpu and training:
        return torch.float32
    if spec_dtype == "auto":
        return torch.float32 if cpu else torch.bfloat16
    if spec_dtype == "auto-bf16":
        return torch.bfloat16 if not cpu or native_bf16() else torch.float32
    try:
        return getattr(torch, spec_dtype)
    except AttributeError:
        raise ModelError(f"unknown dtype {spec_dtype!r}") from None


def cache_root() -> Path:
    return Path(os.environ.get("MKAILIN_CACHE", Path.home() / ".cache" / "mkailin"))


def dequantized(path: str, gguf_file: str) -> str:
    """A GGUF model dequantised once into a plain safetensors folder under the cache.

    transformers dequantises GGUF on every load (seconds) and marks the result as quantized,
    which its Trainer refuses; the cached copy loads in a fraction of a second and trains.
    """
    src = Path(path) / gguf_file
    if not src.is_file():
        raise ModelError(f"GGUF file {src} does not exist")
    st = src.stat()
    digest = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[
        :16
    ]
    out = cache_root() / "models" / f"{src.stem}-{digest}"
    if (out / "config.json").is_file():
        return str(out)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype="float32")
    model.hf_quantizer = None  # the weights are plain float32 now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def adapter_chain(adapter: str | tuple | list | None) -> tuple[str, ...]:
    """Adapters to stack: a path, several joined with ``+``, or a sequence of paths."""
    if not adapter:
        return ()
    if isinstance(adapter, str):
        return tuple(a for a in adapter.split("+") if a)
    return tuple(adapter)


def load_causal_lm(
    spec: ModelSpec,
    adapter: str | tuple = "",
    trainable: bool = False,
    fresh: bool = False,
    training: bool = False,
):
    """(tokenizer, model) for a spec, loaded once per process and shared, unless ``fresh``,
    ``trainable`` or ``training`` (training must never touch the shared copy; on the CPU it
    also loads float32 weights).

    Adapters stack in order and are merged into the weights, so inference runs at the base
    model's speed (an unmerged LoRA adds its two matmuls to every layer, about half again the
    decoding time of SmolLM2 on a CPU). Only a ``trainable`` load keeps the last adapter as a
    peft adapter.
    """
    fresh = fresh or trainable or training
    chain = adapter_chain(adapter)
    path = resolve_model_path(spec.model)
    device = _device(spec.device)
    key = (path, spec.gguf_file, spec.tokenizer, chain, device, spec.dtype)
    if not fresh:
        with _CACHE_LOCK:
            if key in _MODEL_CACHE:
                return _MODEL_CACHE[key]
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        if spec.gguf_file:
            path = dequantized(path, spec.gguf_file)
        tok_path = resolve_model_path(spec.tokenizer) if spec.tokenizer else path
        tokenizer = AutoTokenizer.from_pretrained(tok_path)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=_dtype(spec.dtype, device, training)
        )
    except OSError as e:
        raise ModelError(f"cannot load model {spec.model!r}: {str(e).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(device)
    if chain:
        try:
            from peft import PeftModel
        except ImportError:
            raise MissingDependencyError("peft", "train", "LoRA adapters") from None
        for i, a in enumerate(chain):
            if not os.path.isdir(a):
                raise ModelError(f"adapter {a!r} does not exist")
            keep = trainable and i == len(chain) - 1
            model = PeftModel.from_pretrained(model, a, is_trainable=keep)
            if not keep:
                model = model.merge_and_unload()
    if not fresh:
        model.eval()
        with _CACHE_LOCK:
            _MODEL_CACHE[key] = (tokenizer, model)
    return tokenizer, model


def render_prompt(tokenizer, prompt: Prompt, chat_template: bool = True) -> str:
    if isinstance(prompt, str):
        return prompt
    if chat_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return "\n\n".join(m["content"] for m in prompt) + "\n"


class TransformersGenerator(Generator):
    def __init__(self, spec: ModelSpec, name: str = "", adapter: str = ""):
        self.spec = spec
        self.adapter = adapter or spec.adapter
        self.model_id = name or spec.model
        self.tokenizer, self.model = load_causal_lm(spec, self.adapter)

    def _render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, prompt, self.spec.chat_template)

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        import torch

        tok, model = self.tokenizer, self.model
        out: list[Generation] = []
        texts = [self._render(p) for p in prompts]
        bs = max(1, self.spec.batch_size)
        for start in range(0, len(texts), bs):
            chunk = texts[start : start + bs]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(
                model.device
            )
            kw = {"max_new_tokens": params.max_new_tokens, "pad_token_id": tok.pad_token_id}
            if params.temperature > 0:
                torch.manual_seed(params.seed)
                kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            else:
                kw.update(do_sample=False)
            with torch.inference_mode():
                gen = model.generate(**enc, **kw)
            new = gen[:, enc["input_ids"].shape[1] :]
            for i in range(len(chunk)):
                ids = new[i].tolist()
                n = len(ids)
                if tok.eos_token_id in ids:
                    n = ids.index(tok.eos_token_id) + 1
                text = tok.decode(ids[:n], skip_special_tokens=True)
                out.append(
                    Generation(
                        text=_cut_at_stop(text, params.stop).strip(),
                        prompt_tokens=int(enc["attention_mask"][i].sum()),
                        completion_tokens=n,
                    )
                )
        return out

    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[list[float]]:
        import torch

        tok, model = self.tokenizer, self.model
        choice_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
        single = all(len(c) == 1 for c in choice_ids)
        scores: list[list[float]] = []
        bs = max(1, self.spec.batch_size)
        pad = tok.pad_token_id
        for start in range(0, len(prompts), bs):
            rows, spans = [], []
            for p in prompts[start : start + bs]:
                pid = tok(self._render(p), add_special_tokens=False)["input_ids"]
                if single:  # one forward per prompt: the next-token distribution at its end
                    rows.append(pid)
                    spans.append((len(pid), 0))
                    continue
                for cid in choice_ids:
                    rows.append(pid + cid)
                    spans.append((len(pid), len(cid)))
            width = max(len(r) for r in rows)
            # left padding keeps every prompt's last token at the same position
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=model.device)
            mask = torch.tensor(
                [[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device
            )
            # only the last positions are scored: the choice tokens sit at the end (left
            # padding), so the vocabulary projection runs for `keep` positions, not all
            keep = 1 if single else max(cl for _, cl in spans) + 1
            with torch.inference_mode():
                logits = _last_logits(model, ids, mask, keep)
            logp = torch.log_softmax(logits.float(), dim=-1)
            if single:
                targets = torch.tensor([c[0] for c in choice_ids], device=model.device)
                scores += logp[:, -1, :][:, targets].tolist()
                continue
            flat = []
            for j, (_, cl) in enumerate(spans):
                # the token at full position t is predicted at t - 1, kept index t - 1 - width + keep
                pos = torch.arange(keep - cl - 1, keep - 1, device=model.device)
                target = ids[j, width - cl : width]
                flat.append(float(logp[j, pos, target].sum()))
            k = len(choices)
            scores += [flat[i : i + k] for i in range(0, len(flat), k)]
        return scores


def _last_logits(model, ids, mask, keep: int):
    """Logits of the last ``keep`` positions. Models that take ``logits_to_keep`` (Llama and most
    causal LMs in transformers) skip the vocabulary projection for the rest of the sequence."""
    try:
        return model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits[:, -keep:]
    except TypeError:
        return model(input_ids=ids, attention_mask=mask).logits[:, -keep:]


# ------------------------------------------------------------------------------ vLLM
class VLLMGenerator(Generator):
    def __init__(self, spec: ModelSpec, name: str = "", adapter: str = ""):
        try:
            import vllm
        except ImportError:
            raise MissingDependencyError("vllm", "vllm", "the vllm backend") from None
        self.spec = spec
        self.model_id = name or spec.model
        self.adapter = adapter or spec.adapter
        path = resolve_model_path(spec.model)
        kw = {}
        if spec.gguf_file:
            path = os.path.join(path, spec.gguf_file)
            kw["tokenizer"] = resolve_model_path(spec.tokenizer) if spec.tokenizer else None
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=path,
            enable_lora=bool(self.adapter),
            dtype="auto" if spec.dtype == "auto" else spec.dtype,
            **{k: v for k, v in kw.items() if v},
        )
        self._lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, self.adapter)

    def _sampling(self, params: GenParams, **extra):
        return self._vllm.SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=list(params.stop) or None,
            seed=params.seed,
            **extra,
        )

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        sp = self._sampling(params)
        if all(isinstance(p, str) for p in prompts):
            outs = self.llm.generate(list(prompts), sp, lora_request=self._lora, use_tqdm=False)
        else:
            outs = self.llm.chat(
                [
                    p if not isinstance(p, str) else [{"role": "user", "content": p}]
                    for p in prompts
                ],
                sp,
                lora_request=self._lora,
                use_tqdm=False,
            )
        return [
            Generation(
                text=o.outputs[0].text.strip(),
                prompt_tokens=len(o.prompt_token_ids or []),
                completion_tokens=len(o.outputs[0].token_ids),
            )
            for o in outs
        ]

    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[list[float]]:
        tok = self.llm.get_tokenizer()
        texts = [render_prompt(tok, p) for p in prompts]
        first = [tok(c, add_special_tokens=False)["input_ids"][0] for c in choices]
        sp = self._vllm.SamplingParams(
            max_tokens=1, temperature=0.0, logprobs=20, allowed_token_ids=first
        )
        outs = self.llm.generate(texts, sp, lora_request=self._lora, use_tqdm=False)
        scores = []
        for o in outs:
            lp = o.outputs[0].logprobs[0] if o.outputs[0].logprobs else {}
            scores.append([lp[t].logprob if t in lp else float("-inf") for t in first])
        return scores


# ------------------------------------------------------------------------------ OpenAI-compatible
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def api_key(spec: ModelSpec) -> str:
    """The key from the environment variable the spec names, else from the system keyring
    (service ``mkailin``, user = that variable's name; with the optional ``keyring`` package:
    ``keyring set mkailin OPENAI_API_KEY``). Keys never come from config files or the lake;
    servers on loopback need none."""
    key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
    if not key and spec.api_key_env:
        key = _keyring_key(spec.api_key_env)
    if not key:
        if spec.base_url and ("127.0.0.1" in spec.base_url or "localhost" in spec.base_url):
            return "not-needed"
        if not spec.base_url:
            raise BackendError(
                f"no API key: set the environment variable {spec.api_key_env} "
                f"(or store it with `keyring set mkailin {spec.api_key_env}`)"
            )
        return "not-needed"
    return key


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
            return list(await asyncio.gather(*(self._one(client, sem, p, params) for p in prompts)))

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


# ------------------------------------------------------------------------------ registry
BACKENDS = {"transformers": TransformersGenerator, "vllm": VLLMGenerator, "openai": OpenAIGenerator}
_GENERATORS: dict[tuple, Generator] = {}


def get_generator(spec: ModelSpec, name: str = "", adapter: str = "") -> Generator:
    """A generator for a model spec, built once per process and reused."""
    key = (name, repr(spec), adapter)
    if key not in _GENERATORS:
        cls = BACKENDS.get(spec.backend)
        if cls is None:
            raise ModelError(f"unknown backend {spec.backend!r}")
        _GENERATORS[key] = cls(spec, name, adapter)
    return _GENERATORS[key]


def release_models() -> None:
    """Forget every cached generator and model (between pipeline steps: each adapter chain is a
    full copy of the weights)."""
    import gc

    _GENERATORS.clear()
    _MODEL_CACHE.clear()
    gc.collect()
