#!/usr/bin/env bash
# On a connected machine, in the project's root: download into .whl/ the wheels of jvae's pure-Python
# dependencies that an offline CUDA machine with PyTorch preinstalled may lack (pydantic and its parts,
# tomli-w, and the explore extra's Starlette and uvicorn), and keep .whl/ out of git. Then carry .whl to the
# GPU machine and run: bash benchmarks/gpu.sh
set -euo pipefail
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
for spec in pydantic pydantic-core annotated-types typing-inspection typing-extensions tomli-w \
  starlette anyio sniffio idna uvicorn h11; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "$spec"
done
ls -la .whl
