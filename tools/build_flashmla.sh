#!/bin/bash
# Build a FlashMLA wheel on the GPU host, for the `flashmla` backend (frameworks/flashmla.py). FlashMLA has no
# wheel on PyPI and the GPU host reaches no network, so the sources travel with the tree: check out
#   git clone --recursive https://github.com/deepseek-ai/FlashMLA   (csrc/cutlass is a submodule: --recursive)
# on a host with network and carry the folder (shared/, or `carry`) to the GPU host.
#
# What it builds: FlashMLA's one extension (flash_mla.cuda) for sm90a only (FLASH_MLA_DISABLE_SM100=1, so no
# Blackwell kernels and no need for nvcc >= 12.9) and bf16 only (FLASH_MLA_DISABLE_FP16=1): the dense paged
# decode kernel the backend calls (get_mla_metadata + flash_mla_with_kvcache), its scheduler and combine
# kernels, and the sm90 sparse FP8 decode/prefill kernels that setup.py lists without a switch. Against the
# PYTHON's torch (no build isolation), so the wheel matches the torch that runs the sweeps.
#
# Resumable: `start` (the default) runs the build in the background (setsid nohup: it outlives the call that
# started it) and returns; the same command again reports how far it is (running, done, failed). A build that
# died part way resumes where it stopped: the object files stay in SRC/build and ninja compiles only what is
# missing. WORK (default /tmp/build-flashmla) holds build.log, pid, started, and at the end `done` (the wheel's
# path and the minutes it took) or `failed`.
#
#   bash tools/build_flashmla.sh SRC OUT_DIR [start|status|run]
#   e.g. PYTHON=/tmp/gpuenv/bin/python bash tools/build_flashmla.sh shared/FlashMLA /tmp/wheels
#   then: $PYTHON -m pip install --no-deps /tmp/wheels/flash_mla-*.whl
#
# Environment: PYTHON (default /tmp/gpuenv/bin/python, as tools/gpu_session.sh), WORK, MAX_JOBS (parallel
# compiles; default: cores / 2, at most 8: an nvcc of these kernels takes several GiB), NVCC_THREADS (default 4).
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
SRC=$(cd "$1" && pwd)
OUT=$2
MODE=${3:-start}
WORK=${WORK:-/tmp/build-flashmla}
PY=${PYTHON:-/tmp/gpuenv/bin/python}
mkdir -p "$WORK" "$OUT"
OUT=$(cd "$OUT" && pwd)

running() { [ -s "$WORK/pid" ] && kill -0 "$(cat "$WORK/pid")" 2>/dev/null; }

status() {
  if [ -e "$WORK/done" ]; then
    echo "done: $(cat "$WORK/done")"
  elif running; then
    echo "running since $(cat "$WORK/started") (pid $(cat "$WORK/pid")); last lines of $WORK/build.log:"
    tail -n 3 "$WORK/build.log"
  elif [ -e "$WORK/failed" ]; then
    echo "failed: $(cat "$WORK/failed") (see $WORK/build.log); run the same command again to resume"
  else
    echo "not started"
  fi
}

case "$MODE" in
  status)
    status
    ;;
  start)
    if [ -e "$WORK/done" ] || running; then
      status
      exit 0
    fi
    rm -f "$WORK/failed"
    setsid nohup bash "$0" "$SRC" "$OUT" run >> "$WORK/build.log" 2>&1 < /dev/null &
    echo $! > "$WORK/pid"
    echo "FlashMLA build started in the background (pid $!): follow $WORK/build.log; the marker $WORK/done appears at the end"
    ;;
  run)
    started=$(date +%s)
    date -u +%FT%TZ > "$WORK/started"
    trap 'echo "exit $? after $(( ($(date +%s) - started) / 60 )) min" > "$WORK/failed"' ERR
    echo "== $(date -u +%FT%TZ) FlashMLA $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '(no git)') from $SRC"
    [ -e "$SRC/setup.py" ] || { echo "no setup.py in $SRC: not a FlashMLA checkout"; false; }
    [ -e "$SRC/csrc/cutlass/include/cutlass/cutlass.h" ] || {
      echo "csrc/cutlass is empty: clone with --recursive (or git submodule update --init csrc/cutlass) where there is network"
      false
    }
    "$PY" -c 'import torch, torch.utils.cpp_extension as c; assert torch.version.cuda and c.CUDA_HOME, "torch without CUDA or no nvcc"; print("torch", torch.__version__, "CUDA", torch.version.cuda, "nvcc in", c.CUDA_HOME)'
    cores=$(nproc)
    jobs=$(( cores / 2 > 8 ? 8 : (cores / 2 > 0 ? cores / 2 : 1) ))
    export MAX_JOBS=${MAX_JOBS:-$jobs} NVCC_THREADS=${NVCC_THREADS:-4}
    export FLASH_MLA_DISABLE_SM100=1 FLASH_MLA_DISABLE_FP16=1 TORCH_CUDA_ARCH_LIST=9.0a
    # CUDA 13 keeps libcu++ (cuda/std/...) under include/cccl, which nvcc finds and g++ does not: FlashMLA's
    # api.cpp includes CUTLASS headers that need it ("cuda/std/utility: No such file", H100 host, 2026-12-06)
    cuda_home=$("$PY" -c 'import torch.utils.cpp_extension as c; print(c.CUDA_HOME or "")')
    if [ -d "$cuda_home/include/cccl" ]; then
      export CPLUS_INCLUDE_PATH="$cuda_home/include/cccl${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}"
      echo "g++ include path: $CPLUS_INCLUDE_PATH (CUDA 13's CCCL headers)"
    fi
    echo "sm90a, bf16 only; MAX_JOBS=$MAX_JOBS NVCC_THREADS=$NVCC_THREADS; wheel to $OUT"
    # in-tree build (pip >= 21.3): SRC/build keeps the objects, so a second run resumes
    (cd "$SRC" && "$PY" -m pip wheel --no-build-isolation --no-deps -v -w "$OUT" .)
    wheel=$(ls -t "$OUT"/flash_mla-*.whl | head -n 1)
    minutes=$(( ($(date +%s) - started) / 60 ))
    echo "$wheel ($minutes min)" > "$WORK/done"
    echo "== $(date -u +%FT%TZ) built $wheel in $minutes min"
    ;;
  *)
    echo "mode: '$MODE' is not valid; expected start, status or run"
    exit 2
    ;;
esac
