#!/bin/bash
# The GPU-host job behind the published results/<gpu>.csv rows: conformance tests of the backends
# named in TEST_K, the device's ceilings, then the `readme` sweep (library backends and Triton
# first, the PyTorch backends after) and the batch-1 × 32k decode extra. Run it in the background on
# the device (setsid) after the backend wheels are installed into /tmp/gpuenv; everything lands in
# JOB (default /tmp/job), with a `done` marker at the end.
#
#   TEST_K="flash-attn4 or transformer-engine" PRIMARY=... B1=... REST="" bash tools/device_sweep.sh  (empty = skip)
set -u
JOB=${JOB:-/tmp/job}
P=${PYTHON:-/tmp/gpuenv/bin/python}
PRIMARY=${PRIMARY-flash-attn3,flash-attn2,flashinfer,flash-attn4,transformer-engine,triton,sdpa-cudnn,sdpa}
REST=${REST-sdpa-flash,sdpa-efficient,flex,torch-compile,sdpa-math,torch-naive}
B1=${B1-triton,flash-attn3,flashinfer,flash-attn4,transformer-engine,sdpa-cudnn,flex}
mkdir -p "$JOB"
export PYTHONUNBUFFERED=1
step() { echo "$(date -u +%H:%M:%S) $*" >> "$JOB/steps.log"; }
if [ -n "${TEST_K:-}" ]; then
  step tests; $P -m pytest -q -m gpu tests/test_gpu.py -k "$TEST_K" > "$JOB/tests.log" 2>&1
fi
step calibrate; $P run.py calibrate > "$JOB/calibrate.log" 2>&1; cp results/calibration-*.csv "$JOB/" 2>/dev/null
step primary; $P run.py sweep --preset readme -b "$PRIMARY" -o "$JOB/readme.csv" --plot-dir "$JOB/plots" > "$JOB/sweep-primary.log" 2>&1
[ -n "$B1" ] && { step b1; $P run.py sweep --preset readme -w decode --batch 1 --seq 32768 -b "$B1" -o "$JOB/decode-b1-32k.csv" --plot-dir "$JOB/plots-b1" > "$JOB/sweep-b1.log" 2>&1; }
if [ -n "$REST" ]; then
  step rest; $P run.py sweep --preset readme -b "$REST" -o "$JOB/readme.csv" --plot-dir "$JOB/plots" > "$JOB/sweep-rest.log" 2>&1
fi
step done; touch "$JOB/done"
