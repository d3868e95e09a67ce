#!/usr/bin/env bash
# Run the real-GPU tests (tests/gpu) on a machine with an NVIDIA GPU and print a short summary.
#
#   bash tests/gpu/run_on_device.sh            # makes .venv-gpu, installs the project and torch
#   PYTHON=/path/to/python bash tests/gpu/run_on_device.sh   # use an interpreter as it is
#
# The venv sees system site packages, so a CUDA torch already on the machine is reused; when
# pip cannot reach an index (offline machines) the source tree is used through PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/../.."

py="${PYTHON:-}"
if [ -z "$py" ]; then
  python3 -m venv --system-site-packages .venv-gpu || { echo "cannot create .venv-gpu"; exit 2; }
  py=.venv-gpu/bin/python
  "$py" -m pip install -q -e '.[test]' \
    || echo "warning: pip install -e '.[test]' failed (offline?); using the source tree"
  if ! "$py" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    # The default PyPI wheel for Linux x86_64 is a CUDA build.
    "$py" -m pip install -q torch || echo "warning: no CUDA torch; the memory tests will skip"
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== GPU"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader \
  || echo "nvidia-smi not available"
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
  "available", torch.cuda.is_available())' 2>/dev/null || echo "torch not importable"

log="$(mktemp)"
"$py" -m pytest tests/gpu -v -rs -p no:cacheprovider 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

echo "== summary"
echo "gpu: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)"
echo "passed: $(grep -c ' PASSED' "$log")  failed: $(grep -c ' FAILED' "$log")" \
  " skipped: $(grep -c ' SKIPPED' "$log")  errors: $(grep -c ' ERROR' "$log")"
tail -n 1 "$log"
exit "$rc"
