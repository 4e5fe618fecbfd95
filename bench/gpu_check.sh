#!/usr/bin/env bash
# One call on an accelerator machine: the GPU-marked tests, the diffusers-prior tests on the GPU,
# then the Stable Diffusion 1.5-size DAS benchmark (figures printed, nothing asserted).
#
#   bash bench/gpu_check.sh                    # extra arguments go to bench/das_gpu.py
#   PYTHON=/path/to/python bash bench/gpu_check.sh   # an interpreter whose torch has CUDA
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
has_cuda='import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "$has_cuda" 2>/dev/null; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "$has_cuda" 2>/dev/null; then
  echo "gpu_check: $PY has no CUDA-enabled torch ($("$PY" -c 'import torch; print(torch.__version__)' 2>&1)); set PYTHON=..." >&2
  exit 2
fi
"$PY" -c 'import torch; print("gpu_check:", torch.__version__, torch.cuda.get_device_name(0))'
TILTLOOP_TEST_DEVICE=cuda timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests; rc_gpu=$?
TILTLOOP_TEST_DEVICE=cuda timeout 200 "$PY" -m pytest -q -p no:cacheprovider tests/optimizer/priors/test_diffusers_pixel.py tests/optimizer/priors/test_diffusers_latent.py; rc_priors=$?
timeout 480 "$PY" bench/das_gpu.py --device cuda "$@"; rc_bench=$?
echo "gpu_check: gpu-marked tests rc=$rc_gpu, diffusers priors on cuda rc=$rc_priors, bench rc=$rc_bench"
[ "$rc_gpu" -eq 0 ] && [ "$rc_priors" -eq 0 ] && [ "$rc_bench" -eq 0 ]
