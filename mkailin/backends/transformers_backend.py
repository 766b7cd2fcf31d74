"""The ``transformers`` backend: batched, CPU or GPU, GGUF through ``gguf_file=``, chat
templates, LoRA adapters through peft (merged into the weights for inference), and
log-likelihood scoring of fixed choices. ``load_causal_lm`` also loads models for training."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

from mkailin.backends import native_bf16, resolve_model_path
from mkailin.backends.base import (
    Generation,
    Generator,
    GenParams,
    Prompt,
    _cut_at_stop,
)
from mkailin.config import ModelSpec
from mkailin.errors import MissingDependencyError, ModelError

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


def merged_model_dir(spec: ModelSpec, adapter: str | tuple) -> str:
    """A folder holding the base model with the ``adapter`` chain merged into its weights,
    made once and cached under ``MKAILIN_CACHE/merged`` (keyed by the model and each adapter's
    files): what an engine that takes one model and at most one LoRA (vLLM) serves for stacked
    adapters such as QG-SFT then DPO."""
    chain = adapter_chain(adapter)
    parts = [resolve_model_path(spec.model), spec.gguf_file]
    for a in chain:
        for f in sorted(Path(a).glob("*")):
            st = f.stat()
            parts.append(f"{f}|{st.st_size}|{st.st_mtime_ns}")
    out = cache_root() / "merged" / hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    if (out / "config.json").exists():
        return str(out)
    cpu = dataclasses.replace(spec, device="cpu", dtype="float32")
    tokenizer, model = load_causal_lm(cpu, chain, fresh=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(out)


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
