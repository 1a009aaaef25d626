#!/bin/bash
# A GPU-host job of one session (run in the background with setsid after the wheels are installed):
# GPU tests (pytest -k expression in TESTS, if set; TESTS=all runs every one), calibration (unless CALIBRATE=0: the sweep then
# reads results/calibration-<gpu>.csv), then the sweeps named in SWEEPS as "name|args" entries separated
# by ';', args being `run.py sweep` options as on a command line, quotes and all: a backend variant or a
# measurement option is a sweep argument, e.g. "fill|--preset serving -b 'triton[splits=fill]' --l2-flush read"
# (an entry that says --ray runs on a local Ray head with the GPUs of this host, started before it and
# stopped after it). Shell commands in CMDS (profiles, explorations: output in cmds.log)
# run after the tests, before the sweeps; those in CMDS_LAST after the sweeps (output in cmds-last.log).
# Everything lands in JOB (default /tmp/job); `done` at the end.
# The device's copy of the tree may carry a stale .git: pass the commit that is running, e.g.
#   GIT_COMMIT=<git rev-parse --short=12 HEAD, run here> bash tools/gpu_session.sh
# (each sweep then gets --git-commit "$GIT_COMMIT", the commit its rows name).
# Start it with `setsid nohup bash tools/gpu_session.sh > /tmp/session.out 2>&1 < /dev/null &` (a job
# started with a plain `&` dies with the call that started it), and keep a call open while it runs
# (`for i in $(seq 50); do sleep 10; [ -e /tmp/job/done ] && break; done`): the lent machine goes back
# 30 s after a call ends, and what was installed on it goes with it.
# End every polling call with `tar czf $OUT/job.tgz -C /tmp job`: a machine was taken back between two
# polls on 2026-11-29, and the rows its job had written went with it.
set -u
JOB=${JOB:-/tmp/job}
P=${PYTHON:-/tmp/gpuenv/bin/python}
mkdir -p "$JOB"
export PYTHONUNBUFFERED=1
step() { echo "$(date -u +%H:%M:%S) $*" >> "$JOB/steps.log"; }
# PYTEST_ARGS: more pytest options, e.g. "-n 8" (pytest-xdist) to run the correctness tests side by side;
# the tests marked `exclusive` (timing and ceiling assertions) then run after them with the GPU to themselves
# shellcheck disable=SC2086  # PYTEST_ARGS is a word list
[ "${TESTS:-}" = all ] && TESTS="not attnbench_no_such_test"
if [ -n "${TESTS:-}" ]; then
  step tests
  if [ -n "${PYTEST_ARGS:-}" ]; then
    $P -m pytest -q -m "gpu and not exclusive" tests/test_gpu.py -k "$TESTS" $PYTEST_ARGS > "$JOB/tests.log" 2>&1
    step "tests (exclusive)"
    $P -m pytest -q -m "gpu and exclusive" tests/test_gpu.py -k "$TESTS" -n 0 >> "$JOB/tests.log" 2>&1
  else
    $P -m pytest -q -m gpu tests/test_gpu.py -k "$TESTS" > "$JOB/tests.log" 2>&1
  fi
fi
if [ -n "${CMDS:-}" ]; then step cmds; JOB=$JOB PYTHON=$P bash -c "$CMDS" > "$JOB/cmds.log" 2>&1; fi
if [ "${CALIBRATE:-1}" != 0 ]; then
  step calibrate; $P run.py calibrate > "$JOB/calibrate.log" 2>&1; cp results/calibration-*.csv "$JOB/" 2>/dev/null
fi
IFS=';' read -ra entries <<< "${SWEEPS:-}"
ray_cli() { RAY_USAGE_STATS_ENABLED=0 $P -m ray.scripts.scripts "$@" >> "$JOB/ray.log" 2>&1; }
commit=()
[ -n "${GIT_COMMIT:-}" ] && commit=(--git-commit "$GIT_COMMIT")
for entry in "${entries[@]}"; do
  IFS='|' read -r name args <<< "$entry"
  case "$args" in
    *'|'*)  # the former "|ENV=value" part: the switches are variants now, e.g. -b 'triton[splits=fill]'
      step "sweep $name: skipped: no ENV=value part any more, give the variant as a sweep argument"; continue ;;
  esac
  # args as a command line: quotes honoured, a variant's brackets never taken for a file pattern
  set -f; eval "sweep_args=($args)"; set +f
  case "$args" in *--ray*) step "ray start"; ray_cli start --head --include-dashboard=false ;; esac
  step "sweep $name"
  # shellcheck disable=SC2086  # P may hold options
  $P run.py sweep "${sweep_args[@]}" ${commit[@]+"${commit[@]}"} -o "$JOB/$name.csv" --no-plots >> "$JOB/sweep-$name.log" 2>&1
  case "$args" in *--ray*) step "ray stop"; ray_cli stop --force ;; esac
done
if [ -n "${CMDS_LAST:-}" ]; then step cmds-last; JOB=$JOB PYTHON=$P bash -c "$CMDS_LAST" > "$JOB/cmds-last.log" 2>&1; fi
step done; touch "$JOB/done"
