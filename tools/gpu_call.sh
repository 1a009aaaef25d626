#!/bin/bash
# One call of the lent GPU machine, start to end inside the call (a call's command may run 600 s): install the
# carried backend parts, then the sweeps of a plan file, each cut by what is left of BUDGET seconds, every sweep
# --resume into JOB (default /tmp/jobt), and JOB tarred into $OUT/res.tgz on exit (a trap), so a call cut short
# loses no row. A later call on the same warm machine finds /tmp/gpuenv and JOB as they were and resumes.
#
#   HEAD=0ebfc83aa1b2 PLAN=plan.sh WHEELS=".gpu-wheels/d1/*" BUDGET=520 bash tools/gpu_call.sh
#
# HEAD: the commit, written out from `git rev-parse --short=12 HEAD` on your machine, not computed on the lent one:
# its copy of the tree can carry a stale .git (2026-12-06: `git rev-parse HEAD` there said a session's first commit
# in every later call, and the rows' git_commit had to be rewritten; docs/results-history.md).
#
# PLAN: a shell file of lines `sweep NAME run.py-sweep-options…` (rows into JOB/NAME.csv, log JOB/NAME.log; each
# with --resume --max-seconds ${MAX_SECONDS:-0.1} --git-commit HEAD --no-plots) and `step TEXT` (a line in
# JOB/steps.log); `left` prints the seconds left. WHEELS: the part folders tools/install_wheels.sh takes (skipped
# when empty). OUT: the folder whose files come back (the device tool sets it). PYTHON: the interpreter (default
# /tmp/gpuenv/bin/python where install_wheels.sh made it, else python3). The machine's GPU, driver and the libraries
# that import go to JOB/gpu.txt. Exit status 1 when a sweep failed (its line in JOB/steps.log says so; its log
# JOB/NAME.log says why) or was skipped for want of time, 2 on a missing HEAD, PLAN or OUT. Used on 2026-12-06 (docs/gpu-host.md, "A session in
# calls of ten minutes").
set -u
need="HEAD: the commit that runs; PLAN: a file of sweep lines; OUT: the folder that comes back"
for name in HEAD PLAN OUT; do
  [ -n "${!name:-}" ] || { echo "gpu_call.sh: $name is not set ($need)" >&2; exit 2; }
done
[ -f "$PLAN" ] || { echo "gpu_call.sh: PLAN: $PLAN is not a file" >&2; exit 2; }
[ -d "$OUT" ] || { echo "gpu_call.sh: OUT: $OUT is not a folder" >&2; exit 2; }
J=${JOB:-/tmp/jobt}; mkdir -p "$J"; T0=$(date +%s); FAILED=0
trap 'tar czf "$OUT/res.tgz" -C "$(dirname "$J")" "$(basename "$J")" 2>/dev/null' EXIT
left() { echo $(( ${BUDGET:-540} - ($(date +%s) - T0) )); }
step() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$J/steps.log"; }
step install
for d in ${WHEELS:-}; do bash tools/install_wheels.sh "$d" >> "$J/install.log" 2>&1; done
P=${PYTHON:-/tmp/gpuenv/bin/python}; [ -x "$P" ] || P=python3
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,driver_version --format=csv,noheader >> "$J/gpu.txt" 2>&1
"$P" - >> "$J/gpu.txt" 2>&1 <<'PY'
import importlib
for name in ("torch", "triton", "flash_attn", "flash_attn_interface", "flashinfer", "flash_mla", "transformer_engine"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "imported"))
    except Exception as exc:  # noqa: BLE001 - a missing library is a line, not a stop
        print(name, "-", type(exc).__name__)
PY
cat "$J/gpu.txt"
sweep() {
  name=$1; shift; step "sweep $name ($(left) s left)"
  # too little time left to start one: said, and the call's status says a sweep did not run
  [ "$(left)" -gt 20 ] || { step "sweep $name: skipped, $(left) s left"; FAILED=1; return 0; }
  timeout "$(left)" "$P" run.py sweep "$@" --resume --max-seconds "${MAX_SECONDS:-0.1}" --git-commit "$HEAD" \
    -o "$J/$name.csv" --no-plots >> "$J/$name.log" 2>&1
  rc=$?
  # 124: cut by the time left (its rows are kept; a later call resumes); 3: a row is incorrect; others: failed
  [ $rc -eq 0 ] || { step "sweep $name: exit $rc (see $name.log)"; [ $rc -eq 124 ] || FAILED=1; }
  return 0
}
# shellcheck disable=SC1090  # the plan is the caller's
. "$PLAN"
step done
exit $FAILED
