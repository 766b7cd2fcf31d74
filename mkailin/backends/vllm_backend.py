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
from mkailin.backends.transformers_backend import render_prompt
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
