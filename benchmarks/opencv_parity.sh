#!/usr/bin/env bash
# The parity tests (pytest -m parity: Mask R-CNN and Faster R-CNN against torchvision at 4:3,
# 16:9 and portrait, Ultralytics' predictor, the shipped tiny model, the fits, the masks) on
# several OpenCV releases, in the test venv: each release is unpacked into its own folder and put
# first on PYTHONPATH, so nothing in the venv changes.
#
#   bash benchmarks/opencv_parity.sh [VERSION ...]   (default: 4.10.0.84 5.0.0.93 5.1.0.95: the oldest allowed, the last two)
#
# Run from the repository root inside the README's test venv; needs the package registry.
set -euo pipefail
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(4.10.0.84 5.0.0.93 5.1.0.95)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for v in "${versions[@]}"; do
  pip install -q --no-deps --target "$scratch/$v" "opencv-python-headless==$v"
  got=$(PYTHONPATH="$scratch/$v" python -c "import cv2; print(cv2.__version__)")
  start=$(date +%s)
  if PYTHONPATH="$scratch/$v" python -m pytest -q -p no:cacheprovider -m parity > "$scratch/$v.log" 2>&1; then result=passed; else result=FAILED; status=1; fi
  echo "opencv-python-headless $v (cv2 $got): $result — $(tail -1 "$scratch/$v.log") [$(( $(date +%s) - start )) s]"
  [ "$result" = passed ] || grep -E "^(FAILED|ERROR)" "$scratch/$v.log" || true
done
exit $status
