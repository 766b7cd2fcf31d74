"""vLLM tokens/s through mkailin's stage runner against raw vLLM on the same prompts.

    python bench/gpu_throughput.py --prompts 512 --max-new-tokens 128

Both sides use SmolLM2-135M-Instruct (merged to a HF folder) with the same sampling settings.
Raw: one ``LLM.chat`` call over all prompts. mkailin: the question stage through
``run_stage`` (batches of ``--batch-size``), on a lake of generated articles. Reports generated
tokens per second for each and the ratio (goal: mkailin >= 80% of raw). Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pyarrow as pa


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default="bench/out/gpu_throughput.json")
    args = ap.parse_args()
    import torch
    import vllm

    from mkailin.agents.prompts import template
    from mkailin.agents.question import generate_questions
    from mkailin.backends.generation import release_models
    from mkailin.backends.transformers_backend import merged_model_dir
    from mkailin.config import Config, ModelSpec
    from mkailin.lake import Lake

    cfg = Config()
    folder = merged_model_dir(dataclasses.replace(cfg.models["smollm2"], device="cpu"), ())
    abstracts = [
        f"Study {i}: we measured marker {i % 97} in {i % 7 + 2} cohorts of patients with "
        "chronic kidney disease and found that higher levels predicted faster decline. " * 2
        for i in range(args.prompts)
    ]
    tpl = template(cfg.agent("general").prompt)
    msgs = [tpl.messages(abstract=a, title="") for a in abstracts]
    sp = vllm.SamplingParams(max_tokens=args.max_new_tokens, temperature=0.0, ignore_eos=True)
    llm = vllm.LLM(model=folder, gpu_memory_utilization=0.4, max_model_len=2048)
    llm.chat(msgs[:8], sp, use_tqdm=False)  # warm-up
    t = time.perf_counter()
    outs = llm.chat(msgs, sp, use_tqdm=False)
    raw_s = time.perf_counter() - t
    raw_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    del llm
    torch.cuda.empty_cache()

    cfg.models["v"] = ModelSpec(
        backend="vllm",
        model=folder,
        batch_size=args.batch_size,
        gpu_memory_utilization=0.4,
        max_model_len=2048,
    )
    cfg.agents["general"].model = "v"
    cfg.agents["general"].adapter = "none"
    cfg.agents["general"].max_new_tokens = args.max_new_tokens
    cfg.generate.articles = 0
    cfg.eval.blocklist = "none"
    lake = Lake.init(Path(tempfile.mkdtemp(prefix="mkailin-gpu-")) / "lake")
    lake.write_part(
        "article_records",
        pa.Table.from_pylist(
            [
                {
                    "pmid": i + 1,
                    "title": f"T{i}",
                    "abstract": a,
                    "source": "pubmed",
                    "ingest_seq": i + 1,
                    "deleted": False,
                }
                for i, a in enumerate(abstracts)
            ]
        ),
    )
    t = time.perf_counter()
    (r,) = generate_questions(lake, cfg, ("general",), progress=False)
    ours_s = time.perf_counter() - t
    release_models()
    ours_tokens = r.tokens_out or raw_tokens
    out = {
        "machine": f"{platform.node()} {torch.cuda.get_device_name(0)}, {platform.platform()}",
        "prompts": args.prompts,
        "raw_tokens_per_s": round(raw_tokens / raw_s, 1),
        "mkailin_tokens_per_s": round(ours_tokens / ours_s, 1),
        "ratio": round((ours_tokens / ours_s) / (raw_tokens / raw_s), 3),
        "rows_out": r.rows_out,
    }
    print(json.dumps(out, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
