#!/bin/bash
# On the offline GPU host: install the wheels of the given part folders into /tmp/gpuenv, a Python
# environment layered over the host's own PyTorch; run it after each part arrives (split wheels are
# joined once all their pieces are there). Then use /tmp/gpuenv/bin/python.
#
#   bash tools/install_wheels.sh PARTDIR...
set -uo pipefail
STAGE=${STAGE:-/tmp/gpu-wheels}; ENV=${GPUENV:-/tmp/gpuenv}
mkdir -p "$STAGE"
for d in "$@"; do cp -n "$d"/* "$STAGE"/ 2>/dev/null || true; done
cd "$STAGE"
for first in *.whl.part00 *.txz.part00; do
  [ -e "$first" ] || continue
  whl=${first%.part00}; n=$(ls "$whl".part* | wc -l); last=$(printf '%s.part%02d' "$whl" $((n - 1)))
  if [ -e "$last" ] && [ "$(stat -c %s "$last")" -lt "$(stat -c %s "$first")" ]; then
    cat "$whl".part* > "$whl.tmp" && mv "$whl.tmp" "$whl" && rm -f "$whl".part*
  fi
done
ls *.part[0-9]* >/dev/null 2>&1 && echo "still waiting for pieces of: $(ls *.part[0-9]* | sed 's/.part[0-9]*$//' | sort -u | tr '\n' ' ')"
if [ ! -x "$ENV/bin/python" ]; then
  python3 -m venv --without-pip "$ENV"
  sp=$("$ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$sp/_host_site.pth"
fi
sp=$("$ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# only the wheels not installed by an earlier call (a stamp a wheel in $STAGE/.installed): a call then
# costs its own part's install, not every part's again
mkdir -p "$STAGE/.installed"
new=()
for whl in "$STAGE"/*.whl; do
  [ -e "$whl" ] && [ ! -e "$STAGE/.installed/$(basename "$whl")" ] && new+=("$whl")
done
# trees packed by offline_wheels.sh --txz: unpacked over site-packages as they are
for txz in "$STAGE"/*.txz; do
  [ -e "$txz" ] && [ ! -e "$STAGE/.installed/$(basename "$txz")" ] || continue
  if tar xJf "$txz" -C "$sp"; then touch "$STAGE/.installed/$(basename "$txz")"; echo "unpacked: $(basename "$txz")"; fi
done
if [ ${#new[@]} -gt 0 ]; then
  # into an empty folder, then merged over site-packages: `pip --target --upgrade` straight into it would
  # replace a top-level folder that an earlier part's wheel shares (transformer_engine/ of the core
  # library and of the torch extension, flash_attn/ of FA2 and FA4) instead of merging it
  tmp=$(mktemp -d "$STAGE/.target.XXXX")
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$tmp" "${new[@]}" 2>&1 | tail -3
  if [ "${PIPESTATUS[0]}" -eq 0 ] && cp -a "$tmp"/. "$sp"/; then
    for whl in "${new[@]}"; do touch "$STAGE/.installed/$(basename "$whl")"; done
  fi
  rm -rf "$tmp"
  echo "installed now: $(for w in "${new[@]}"; do basename "$w"; done | tr '\n' ' ')"
fi
"$ENV/bin/python" - <<'PY'
import importlib
for mod in ["torch", "flash_attn", "flash_attn_interface", "flash_attn.cute", "flashinfer", "transformer_engine.pytorch"]:
    try:
        m = importlib.import_module(mod); print(f"{mod:28s} ok {getattr(m, '__version__', '')}")
    except Exception as e:
        print(f"{mod:28s} -- {type(e).__name__}: {str(e)[:80]}")
PY
