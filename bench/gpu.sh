#!/usr/bin/env bash
# The GPU checks of issue 20 in one device call, sized to finish in about 5 minutes on one
# NVIDIA H100 / H200 with 16 cores (bench/gpu_checks.py says what is measured).
#
# Prepare once, on this machine, in the repository root (the device has no network; its image
# holds torch, numpy, scipy, pandas, scikit-learn, typer, PyYAML, safetensors, rich, but not the
# packages below; versions as in .venv here; about 60 MB of wheels, under the 64 MiB a call
# carries together with the working tree):
#
#   echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl monai==1.6.1 SimpleITK==2.5.7 pydantic==2.14.4 \
#     pydantic-core==2.50.5 typing-inspection==0.4.5 annotated-types==0.8.0
#
# Then one device call (the run tool), carrying .whl, with a limit that leaves time to rerun:
#
#   command: bash bench/gpu.sh      carry: [".whl"]      timeout_s: 420
#
# gliorad runs from src/ (PYTHONPATH), not installed: the image's torch (2.11 + CUDA) is used,
# not the 2.13 the project pins for CPU installs. Results: $OUT/gpu_checks.json (the device
# tool brings $OUT back), the table on stdout, and the GPU's name, memory and driver.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/out/gpu}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
python3 -c "import torch, monai, SimpleITK; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
python3 bench/gpu_checks.py --out "$OUT" --patients 16 --epochs 4 "$@" 2>&1 | tee "$OUT/gpu_checks.log"
