#!/usr/bin/env bash
# The whole GPU check in one call: profile the device and run the validation suite on CUDA
# (psreal on the GPU against pssim's prediction), then write reports/gpu/<device>/ with the same
# table as reports/validation/ (suite.md, suite.json, suite.csv, parity plot) and env.txt.
#
#   scripts/gpu_validate.sh [--dry-run] [SCENARIO.yaml ...]   (default: scenarios/validation/*.yaml)
#
# On a machine whose Python lacks simpy/pydantic (the lent GPU machines), it installs them from
# .whl/ (see scripts/fetch_device_wheels.sh). When $OUT is set (the device tool's output folder),
# the report files are copied there too, so they come back. --dry-run checks the environment and
# prints what it would run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
SCEN=("$@")
[ ${#SCEN[@]} -gt 0 ] || SCEN=(scenarios/validation/*.yaml)

if ! $PY -c "import simpy, pydantic" 2>/dev/null; then
  if [ ! -d .whl ]; then
    echo "error: simpy/pydantic are missing and there is no .whl/ folder (run scripts/fetch_device_wheels.sh where PyPI is reachable)" >&2
    exit 2
  fi
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pssim-site .whl/*.whl
  export PYTHONPATH=/tmp/pssim-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1

DEV=$($PY -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-') if torch.cuda.is_available() else 'no-cuda')")
if [ "$DEV" = "no-cuda" ] && [ $DRY -eq 0 ]; then
  echo "error: no CUDA device visible to torch; nothing to validate on a GPU" >&2
  exit 2
fi
REPORT=${REPORT_DIR:-reports/gpu/$DEV}
RESULTS=${RESULTS_DIR:-/tmp/pssim-gpu-results}
export PSSIM_CACHE=${PSSIM_CACHE:-/tmp/pssim-gpu-cache}
# as `make validate`: 3 real runs per scenario, round by round (REPEATS=1 to fit a short device lease)
CMD=($PY -m pssim.cli compare "${SCEN[@]}" --device cuda --repeats "${REPEATS:-3}" --out "$RESULTS" --report-dir "$REPORT")
if [ $DRY -eq 1 ]; then
  echo "device: $DEV"
  echo "would run: ${CMD[*]}"
  $PY -c "import pssim, psreal.cli; print('imports ok')"
  exit 0
fi
mkdir -p "$REPORT"
{
  echo "device: $DEV"
  date -u +"date: %Y-%m-%dT%H:%M:%SZ"
  $PY -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda); print('python', platform.python_version())"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
  echo "cpu cores: $(nproc)"
} > "$REPORT/env.txt"
set +e
"${CMD[@]}" 2>&1 | tee "$REPORT/compare.log"
rc=${PIPESTATUS[0]}
set -e
if [ -n "${OUT:-}" ]; then
  for f in "$REPORT"/*; do [ -f "$f" ] && cp "$f" "$OUT/"; done
fi
exit $rc
