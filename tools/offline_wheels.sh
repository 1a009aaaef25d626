#!/bin/bash
# Pack the GPU attention backends as wheels for a GPU host without a package index (x86-64 Linux,
# Python 3.12, PyTorch already installed there), in parts small enough to carry one at a time.
#
#   bash tools/offline_wheels.sh [--txz] OUTDIR GROUP...   GROUP: flashinfer | fa4 | te | ray | DIR (wheels you built)
#
# PyPI wheels are downloaded for the host's platform (python 3.12, manylinux x86-64). FlashAttention-2
# and -3 and Transformer Engine's torch extension have no wheel for every torch/CUDA pair: build them
# once on a machine like the host (README: "Backends on an offline GPU host") and name their folder.
# Writes OUTDIR/part1, part2, ... of at most PART_MB megabytes (default 60); a larger wheel is split
# into NAME.whl.partNN pieces that tools/install_wheels.sh joins again.
#
# --txz: each GROUP's wheels unpacked into one tree and packed as GROUP.txz (xz -9) instead: FlashInfer's
# wheel is 427 MB of CUDA sources zipped to 62 MB, 16 MB as xz, so FlashInfer with FA2 and FA3 travels in one
# part, not three. tools/install_wheels.sh unpacks a .txz over site-packages once all its pieces are there.
set -euo pipefail
TXZ=0; [ "${1:-}" = --txz ] && { TXZ=1; shift; }
OUT=${1:?usage: offline_wheels.sh [--txz] OUTDIR GROUP...}; shift
LIMIT=$((${PART_MB:-60} * 1000 * 1000))
CACHE=${WHEEL_CACHE:-$HOME/.cache/attnbench-wheels}
mkdir -p "$CACHE" "$OUT"
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64)
declare -A GROUPS_PKGS=(
  [flashinfer]="flashinfer-python==0.7.2.post1 apache-tvm-ffi==0.1.15.post2 cuda-tile==1.7.0 nvidia-cudnn-frontend==1.32.0 nccl4py==0.6.0"
  [fa4]="flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 quack-kernels==0.6.5 torch-c-dlpack-ext==0.1.5 apache-tvm-ffi==0.1.15.post2"
  [ray]="ray==2.60.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1"
  [te]="transformer-engine-cu13==2.20.2 transformer-engine==2.20.2 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 nvdlfw-inspect==0.2.2 nvidia-cudnn-frontend==1.32.0"
)
files=(); work=$(mktemp -d)
for g in "$@"; do
  group=()
  if [ -d "$g" ]; then group=("$g"/*.whl)
  else
  [ -n "${GROUPS_PKGS[$g]+x}" ] || { echo "group: '$g' is not known; expected flashinfer, fa4, te, ray or a folder of wheels" >&2; exit 2; }
  for p in ${GROUPS_PKGS[$g]}; do
    norm=$(echo "${p%%==*}" | tr '-' '_')
    hit=$(ls "$CACHE"/${norm}-${p##*==}-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$hit" ]; then
      python3 -m pip download -q --no-deps --pre "${PLAT[@]}" -d "$CACHE" "$p"
      hit=$(ls "$CACHE"/${norm}-${p##*==}-*.whl | head -1)
    fi
    group+=("$hit")
  done
  fi
  if [ $TXZ = 0 ]; then files+=("${group[@]}"); continue; fi
  # one tree a group, wheels in name order (flash_attn-2 before flash_attn_4: FA4's flash_attn/cute wins)
  name=$(basename "$g"); tree="$work/$name.tree"; mkdir -p "$tree"
  for w in $(printf '%s\n' "${group[@]}" | sort -u); do unzip -q -o "$w" -d "$tree"; done
  tar cf - -C "$tree" . | xz -9 -T0 > "$work/$name.txz"; rm -rf "$tree"
  files+=("$work/$name.txz")
done
# split big files, then first-fit the pieces into parts of at most LIMIT bytes
pieces=()
for f in $(printf '%s\n' "${files[@]}" | sort -u); do
  if [ "$(stat -c %s "$f")" -gt "$LIMIT" ]; then
    split -b $((LIMIT - 1000000)) -d "$f" "$work/$(basename "$f").part"; pieces+=("$work/$(basename "$f")".part*)
  else pieces+=("$f"); fi
done
rm -rf "$OUT"/part*; n=0; declare -A used=()
for p in "${pieces[@]}"; do
  s=$(stat -c %s "$p"); placed=0
  for ((i = 1; i <= n; i++)); do
    if [ $((used[$i] + s)) -le "$LIMIT" ]; then cp "$p" "$OUT/part$i/"; used[$i]=$((used[$i] + s)); placed=1; break; fi
  done
  if [ $placed = 0 ]; then n=$((n + 1)); mkdir -p "$OUT/part$n"; cp "$p" "$OUT/part$n/"; used[$n]=$s; fi
done
rm -rf "$work"
for ((i = 1; i <= n; i++)); do echo "$OUT/part$i $(du -sm "$OUT/part$i" | cut -f1) MB"; done
