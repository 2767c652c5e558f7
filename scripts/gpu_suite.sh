#!/usr/bin/env bash
# The GPU session in one script: install, optionally build mamba_ssm's kernels as a peer, run the GPU test grid,
# then the benchmarks. Each step logs to $OUT/<step>.log; tables are printed as each step ends.
#
#   OUT=/tmp/out bash scripts/gpu_suite.sh peer scan ssd model memory      (from the repo root, on a CUDA machine)
#
# Steps: peer (build mamba_ssm from .peer/, ~3 min), tests (pytest -m gpu, 8 processes), scan, conv-norm, ssd,
# ssd-sweep, ssd-stages (kernel benchmarks), model (training step), memory (long-context table), data (loader).
# Extra Python wheels, if any, are read from .whl/.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"

step() {  # step NAME COMMAND...: run, log, report the exit status
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$OUT/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}

for what in "$@"; do
  case $what in
    peer) step peer bash .peer/peer-kernels.sh build ;;
    tests) step tests python3 -m pytest -q -m gpu -n 8 tests/kernels tests/classification -p no:cacheprovider ;;
    scan) step bench-scan genossm bench selective-scan --out "$OUT/scan" ;;
    conv-norm) step bench-conv-norm genossm bench conv-norm --out "$OUT/convnorm" ;;
    ssd) step bench-ssd genossm bench ssd --sweep-dstate "" --out "$OUT/ssd" ;;
    ssd-sweep) step bench-ssd-sweep genossm bench ssd --seqlen 1024,1048576 --dstate 16 --sweep-dstate 128,256 \
      --out "$OUT/ssdsweep" ;;
    ssd-stages) step bench-ssd-stages genossm bench ssd-stages --out "$OUT/ssdstages" ;;
    model)  # one training step at 2^20 tokens per call, ours and mamba_ssm's, both mixers
      step bench-model genossm bench model --train --dtype bfloat16 --model mamba1-0.7m,mamba2-0.8m \
        --tokens 1048576 --seqlen 1024,16384,262144,1048576 --out "$OUT/model" ;;
    memory)  # the long-context table: batch 1 at 2^20 and 2^21, every memory mode (mamba_ssm: plain)
      step bench-memory genossm bench model --train --dtype bfloat16 --batch 1 --repeats 2 \
        --model mamba1-0.7m,mamba2-0.8m,mamba1-7m,mamba2-7.5m --seqlen 1048576,2097152 \
        --memory plain,checkpoint,segmented --segment-len 262144 --out "$OUT/memory" ;;
    data) step bench-data genossm bench data --out "$OUT/data" ;;
    *) echo "unknown step $what" >&2; exit 2 ;;
  esac
done
