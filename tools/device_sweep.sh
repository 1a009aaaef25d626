#!/bin/bash
# The GPU-host job behind the published results/<gpu>.csv rows, as a tools/gpu_session.sh job:
# conformance tests of the backends named in TEST_K, the device's ceilings, then the `readme` sweep
# (library backends and Triton first, the PyTorch backends after, both into JOB/readme.csv) and the
# batch-1 × 32k decode extra. Run it in the background on the device (setsid) after the backend
# wheels are installed into /tmp/gpuenv; everything lands in JOB (default /tmp/job), with a `done`
# marker at the end.
#
#   TEST_K="flash-attn4 or transformer-engine" PRIMARY=... B1=... REST="" bash tools/device_sweep.sh  (empty = skip)
#
# The backend lists take variants as `run.py sweep -b` does (PRIMARY="triton,triton[splits=fill],..."); set
# GIT_COMMIT=<the commit running> for a tree without .git (gpu_session.sh passes it as --git-commit).
set -u
PRIMARY=${PRIMARY-flash-attn3,flash-attn2,flashinfer,flash-attn4,transformer-engine,triton,sdpa-cudnn,sdpa}
REST=${REST-sdpa-flash,sdpa-efficient,flex,torch-compile,sdpa-math,torch-naive}
B1=${B1-triton,flash-attn3,flashinfer,flash-attn4,transformer-engine,sdpa-cudnn,flex}
SWEEPS="readme|--preset readme -b $PRIMARY"
[ -n "$B1" ] && SWEEPS+=";decode-b1-32k|--preset readme -w decode --batch 1 --seq 32768 -b $B1"
[ -n "$REST" ] && SWEEPS+=";readme|--preset readme -b $REST"
TESTS=${TEST_K:-} SWEEPS=$SWEEPS exec bash "$(dirname "$0")/gpu_session.sh"
