#!/usr/bin/env bash
# GPU smoke test of psr on one GPU, at most 8 minutes: from-scratch ~51M model, bf16 SFT and step-DPO steps
# through psr's stages, the hf engine's search batched vs one problem at a time, peak memory; prints one table.
# Needs only torch, transformers, peft, accelerate (+ rich, tokenizers); vLLM is not used.
#
# TRL and datasets are needed for the SFT / step-DPO rows (psr.training imports `trl` and `datasets.Dataset`);
# without them those rows say "skipped" and the rest runs. On a box with no internet, carry their wheels:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
# (datasets' other needs, pyarrow, xxhash, fsspec, pandas, huggingface-hub, are in the usual torch images; the
# versions are the ones psr's CI uses). This script installs any .whl/*.whl (or $PSR_WHEELS/*.whl) into a
# temporary folder on PYTHONPATH first.
#
# On the lent device machine (an H200): run tool, carry [".whl"], timeout_s 540, command
#   PYTHONUNBUFFERED=1 bash bench/gpu_smoke.sh --json $OUT/gpu_smoke.json 2>&1 | tee $OUT/gpu_smoke.log
# The run is capped at 480 s here (timeout), leaving the rest of a 540 s limit for the wheel install.
# On CPU, the same path at a tiny size (what tests/test_gpu_smoke.py runs): bench/gpu_smoke.sh --device cpu --tiny
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
wheels=${PSR_WHEELS:-.whl}
if compgen -G "$wheels/*.whl" >/dev/null; then
    site=$(mktemp -d)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${PSR_SMOKE_TIMEOUT:-480}" "$PY" bench/gpu_smoke.py "$@"
