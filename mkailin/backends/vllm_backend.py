"""The ``vllm`` backend (optional extra, imported lazily)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from mkailin.backends import resolve_model_path
from mkailin.backends.base import (
    Generation,
    Generator,
    GenParams,
    Prompt,
)
from mkailin.backends.transformers_backend import (
    adapter_chain,
    merged_model_dir,
    render_prompt,
)
from mkailin.config import ModelSpec
from mkailin.errors import MissingDependencyError


class VLLMGenerator(Generator):
    def __init__(self, spec: ModelSpec, name: str = "", adapter: str = ""):
        try:
            import vllm
        except ImportError:
            raise MissingDependencyError("vllm", "vllm", "the vllm backend") from None
        self.spec = spec
        self.model_id = name or spec.model
        chain = adapter_chain(adapter or spec.adapter)
        path = resolve_model_path(spec.model)
        kw = {}
        if len(chain) > 1:
            # vLLM serves one LoRA at a time: stacked adapters (QG SFT, then DPO) are merged
            # into a copy of the weights, made once and cached
            path, chain = merged_model_dir(spec, chain), ()
        elif spec.gguf_file:
            path = os.path.join(path, spec.gguf_file)
            kw["tokenizer"] = resolve_model_path(spec.tokenizer) if spec.tokenizer else None
        self.adapter = chain[0] if chain else ""
        if spec.max_model_len:
            kw["max_model_len"] = spec.max_model_len
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=path,
            enable_lora=bool(self.adapter),
            dtype="auto" if spec.dtype in ("auto", "auto-bf16") else spec.dtype,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            tensor_parallel_size=spec.tensor_parallel_size,
            **{k: v for k, v in kw.items() if v},
        )
        self._lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, self.adapter)

    def release(self) -> None:
        """Free the engine and its GPU memory (between pipeline steps: two 7-8B engines do not
        fit one GPU together)."""
        import gc

        self.llm = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

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
