#!/usr/bin/env bash
# Wheels the GPU machine lacks, for its Python (3.12, x86-64 manylinux), into .whl/ at the repo's
# root (ignored by git; it travels with the working tree when a device call names it in carry).
#
#   bash benchmarks/gpu/make-wheels.sh [DIR]      (default DIR: .whl)
#
# The machine has torch, torchvision, onnx, onnxruntime, opencv-python-headless, numpy, scipy,
# matplotlib, rich, pyyaml, pytest, hypothesis (the device tool's KINDS.md); it lacks what is
# listed here. Each is taken at the version installed here (run this in the environment the
# tests pass in), one of each (two versions stop the install there). The set must stay under
# SIZE_LIMIT_MB: everything that travels to the machine is 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${1:-.whl}"
SIZE_LIMIT_MB=48
NAMES=(
  av                                          # PyAV (with its FFmpeg): decoding, encoding
  pydantic pydantic-core annotated-types typing-inspection   # settings and metadata validation
  pycocotools                                 # rtpipe eval (mAP)
  supervision defusedxml pydeprecate          # what trackers imports
  trackers                                    # tracking (rtpipe installs it without its deps)
)
PY="${PYTHON:-python3}"
WHEELS=()
for name in "${NAMES[@]}"; do
  v=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) || {
    echo "make-wheels: $name is not installed here: run this where rtpipe's tests pass" >&2; exit 1; }
  WHEELS+=("$name==$v")
done
mkdir -p "$DIR"
rm -f "$DIR"/*.whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DIR" "${WHEELS[@]}"
count=$(ls "$DIR"/*.whl | wc -l)
size_mb=$(du -sm "$DIR" | cut -f1)
if [ "$count" -ne "${#NAMES[@]}" ]; then
  echo "make-wheels: expected ${#NAMES[@]} wheels in $DIR, got $count" >&2; exit 1
fi
if [ "$size_mb" -gt "$SIZE_LIMIT_MB" ]; then
  echo "make-wheels: $DIR is $size_mb MB, over the $SIZE_LIMIT_MB MB kept for wheels (64 MiB travel in all)" >&2; exit 1
fi
echo "make-wheels: $count wheels, $size_mb MB in $DIR: ${WHEELS[*]}"
