#!/usr/bin/env bash
# Install the carried wheels (benchmarks/gpu/make-wheels.sh) into a folder of their own, without
# an index and without their dependencies (the machine has those), for PYTHONPATH:
#
#   bash benchmarks/gpu/install-wheels.sh WHEELS_DIR TARGET [extra pip options]
#
# The extra options let a test here install the device's wheels for its Python (3.12) into a
# clean folder: --python-version 3.12 --implementation cp --only-binary=:all: --platform ...
set -euo pipefail
WHEELS="$1"; TARGET="$2"; shift 2
"${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$TARGET" "$@" "$WHEELS"/*.whl
