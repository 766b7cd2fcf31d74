#!/usr/bin/env bash
# The GPU checks, for a machine with a CUDA GPU (about 5-8 minutes): the gpu-marked tests (the
# vLLM backend, the paper config's model stages on SmolLM2) and vLLM tokens/s through the stage
# runner against raw vLLM. Run from the repository root after `scripts/bootstrap --dev` and
# `.venv/bin/pip install vllm`.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 420 "$py" -m pytest -q -m gpu tests/test_gpu.py
timeout 300 "$py" bench/gpu_throughput.py --prompts 512 --max-new-tokens 128
