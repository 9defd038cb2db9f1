#!/usr/bin/env bash
# GPU proof in one call: every GPU check, each capped in time, one JSON per step.
#
# On a lent GPU machine (device tool), after `bash benchmarks/gpu/make-wheels.sh` here:
#   run(command="bash benchmarks/gpu/check.sh", carry=[".whl"], timeout_s=540)
# writes env, tests, build, bench, sources, decode and summary .json into $OUT (they come back);
# commit them under benchmarks/results/gpu/. Here, in CI:
#   bash benchmarks/gpu/check.sh --dry-run --out DIR     (the same steps on the CPU, tiny sizes)
#
# Steps and caps: benchmarks/gpu/check.py. Exit 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
dry=""; out="${OUT:-benchmarks/gpu/out}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry="--dry-run" ;;
    --out) out="$2"; shift ;;
    *) echo "check.sh: unknown option '$1' (use --dry-run, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
started=$(date +%s)
if [ -z "$dry" ] && ls .whl/*.whl >/dev/null 2>&1; then
  echo "installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/site"
  bash benchmarks/gpu/install-wheels.sh .whl /tmp/site || { echo "check.sh: installing the wheels failed" >&2; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
"${PYTHON:-python3}" benchmarks/gpu/check.py $dry --out "$out"
code=$?
echo "gpu check: $(( $(date +%s) - started )) s in all, exit $code; results in $out"
exit $code
