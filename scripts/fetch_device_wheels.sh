#!/usr/bin/env bash
# Download, here (with PyPI access), the wheels the GPU machine's image lacks, into .whl/ (ignored
# by git), for its Python 3.12 on x86-64. The GPU machine has torch, numpy, pandas, matplotlib,
# pyyaml and rich already; it lacks simpy and pydantic (with pydantic-core, annotated-types,
# typing-inspection). scripts/gpu_validate.sh installs them from .whl/ when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
PY=${PYTHON:-python3}
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for pkg in simpy==4.1.2 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types typing-inspection typing-extensions; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl "$pkg"
done
ls -1 .whl
