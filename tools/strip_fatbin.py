"""Zero the CUDA fat-binary payloads of a shared library that are not for the GPU archs kept.

Why: Transformer Engine's `libtransformer_engine.so` is 343 MB, 263 MB of it the `.nv_fatbin` section:
cubins for sm_75 … sm_120, each compressed (zstd), so the library barely compresses and cannot travel
to an offline H100 host in a ~40 MB transfer. An H100 only ever loads the sm_90/sm_90a cubins (a cubin
runs only on its own major arch, and the library ships no PTX), so the others can go. Rather than
rebuild or rewrite the ELF, this overwrites their payload bytes with zeros in a same-size copy: every
offset, section, header and the file size stay identical, and xz squeezes the zeros away.
Compressed payloads are zeroed too: `cuobjdump -lelf` then fails ("Uncompress failed"; a valid zstd
frame of zeros in their place only turns that into "Invalid ELF"), but `cuobjdump -lelf -arch sm_90`
lists and extracts the kept cubins as before, and a loader only inflates the entry it picks for its GPU.

Format (NVIDIA does not document it; read from the bytes and checked with `cuobjdump -lelf`):

* `.nv_fatbin` holds one blob per compiled translation unit, back to back (zero padding between
  blobs is allowed). `.nvFatBinSegment` holds the 24-byte wrappers the runtime registers
  ({u32 magic 0x466243B1, u32 version, u64 address of the blob, u64 0}); each must point at a blob.
  A relocatable `__nv_relfatbin` section, if any, holds blobs in the same format and is scanned too.
* blob header, 16 bytes: u32 magic 0xBA55ED50, u16 version (1), u16 header size (16),
  u64 size of the entries that follow.
* entry header (`header_size` bytes, 64 or more, the tail an options area): u16 kind (1 PTX,
  2 ELF cubin), u16 unknown, u32 header_size, u64 payload size (padded), u32 compressed size,
  u32 unknown, u16 minor, u16 major, u32 arch (75, 80, 90 …), u32 name offset, u32 name length,
  u64 flags, u64 zero, u64 uncompressed size; the payload follows the header.
  Flags: 0x1 64-bit, 0x10 Linux, 0x2000 LZ4-compressed (older CUDA), 0x8000 zstd-compressed (starts
  with the zstd magic 28 B5 2F FD), 0x100000 the arch-specific "a" variant (sm_90a is arch 90 with
  this flag; cuobjdump lists it as sm_90a). A payload is zeroed whole, compressed or not.

Rule, per blob: if the blob has an ELF entry whose arch is kept, every other PTX/ELF entry whose arch
is not kept is zeroed; a blob without one is left whole (counted), so a kernel whose only code for the
kept archs is PTX, or which has none, keeps everything. Entries of an unknown kind are never touched.
Anything that does not parse (a size past the blob or section, a wrapper pointing nowhere) aborts
before the output is written.

    python3 tools/strip_fatbin.py IN.so OUT.so [--keep 90] [--dry-run]
"""

from __future__ import annotations

import argparse
import collections
import os
import struct
import sys
from dataclasses import dataclass, field

FATBIN_MAGIC = 0xBA55ED50
WRAPPER_MAGIC = 0x466243B1
BLOB_HEADER = struct.Struct("<IHHQ")
ENTRY_HEADER = struct.Struct("<HHIQIIHHIIIQQQ")  # the 64 bytes every entry header starts with
WRAPPER = struct.Struct("<IIQQ")
KIND_PTX, KIND_ELF = 1, 2
KIND_NAMES = {KIND_PTX: "ptx", KIND_ELF: "elf"}
FLAG_ARCH_SPECIFIC = 0x100000
BLOB_SECTIONS = (".nv_fatbin", "__nv_relfatbin")
WRAPPER_SECTION = ".nvFatBinSegment"


class FatbinError(ValueError):
    """The bytes do not parse as the fatbin format described above: nothing is written."""


@dataclass
class Entry:
    offset: int  # of the entry header, in the buffer
    kind: int
    header_size: int
    payload_size: int
    arch: int
    flags: int

    @property
    def payload(self) -> slice:
        start = self.offset + self.header_size
        return slice(start, start + self.payload_size)

    @property
    def label(self) -> str:
        suffix = "a" if self.flags & FLAG_ARCH_SPECIFIC else ""
        return f"{KIND_NAMES.get(self.kind, f'kind{self.kind}')} sm_{self.arch}{suffix}"


@dataclass
class Stats:
    blobs: int = 0
    blobs_without_keep: int = 0
    count: collections.Counter = field(default_factory=collections.Counter)  # label -> entries
    size: collections.Counter = field(default_factory=collections.Counter)  # label -> payload bytes
    zeroed_entries: int = 0
    zeroed_bytes: int = 0
    blob_offsets: list = field(default_factory=list)
    sections: list = field(default_factory=list)
    stray_magic: int = 0  # magic bytes outside the parsed blobs (in other data, or by chance)


def parse_blob(buf, start: int, limit: int) -> tuple[list[Entry], int]:
    """The entries of the blob at `start` (which must lie before `limit`) and the offset past it."""
    if start + BLOB_HEADER.size > limit:
        raise FatbinError(f"blob header at {start:#x} passes the region end {limit:#x}")
    magic, _version, header_size, fat_size = BLOB_HEADER.unpack_from(buf, start)
    if magic != FATBIN_MAGIC:
        raise FatbinError(f"no fatbin magic at {start:#x}")
    if header_size < BLOB_HEADER.size:
        raise FatbinError(f"blob at {start:#x}: header size {header_size}")
    end = start + header_size + fat_size
    if end > limit:
        raise FatbinError(f"blob at {start:#x}: size {fat_size} passes the region end {limit:#x}")
    entries, pos = [], start + header_size
    while pos < end:
        if pos + ENTRY_HEADER.size > end:
            raise FatbinError(f"entry header at {pos:#x} passes its blob's end {end:#x}")
        kind, _, hsize, psize, _, _, _, _, arch, _, _, flags, _, _ = ENTRY_HEADER.unpack_from(buf, pos)
        if hsize < ENTRY_HEADER.size or pos + hsize + psize > end:
            raise FatbinError(f"entry at {pos:#x}: header {hsize} + payload {psize} pass its blob's end {end:#x}")
        entries.append(Entry(pos, kind, hsize, psize, arch, flags))
        pos += hsize + psize
    return entries, end


def strip_region(buf: bytearray, start: int, end: int, keep: set[int], stats: Stats, write: bool = True) -> None:
    """Zero, in buf[start:end] (blobs back to back, zero padding between them), the payloads the rule drops.

    Every blob of the region is parsed before any byte is changed, so a region that fails to parse is
    left as it was."""
    plan, pos = [], start
    while pos < end:
        if buf[pos] == 0:  # padding between blobs, or at the region's end
            pos += 1
            continue
        entries, after = parse_blob(buf, pos, end)
        plan.append((pos, entries))
        pos = after
    for blob_start, entries in plan:
        stats.blobs += 1
        stats.blob_offsets.append(blob_start)
        for e in entries:
            stats.count[e.label] += 1
            stats.size[e.label] += e.payload_size
        if not any(e.kind == KIND_ELF and e.arch in keep for e in entries):
            stats.blobs_without_keep += 1
            continue
        for e in entries:
            if e.kind in KIND_NAMES and e.arch not in keep:
                stats.zeroed_entries += 1
                stats.zeroed_bytes += e.payload_size
                if write:
                    buf[e.payload] = bytes(e.payload_size)


def elf_sections(buf) -> dict[str, tuple[int, int, int]]:
    """name -> (file offset, size, address) of a little-endian ELF64 file's sections."""
    if buf[:4] != b"\x7fELF" or buf[4] != 2 or buf[5] != 1:
        raise FatbinError("not a little-endian ELF64 file")
    (shoff,) = struct.unpack_from("<Q", buf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", buf, 0x3A)
    if shoff + shnum * shentsize > len(buf) or shstrndx >= shnum:
        raise FatbinError("section headers pass the end of the file")
    headers = [struct.unpack_from("<IIQQQQ", buf, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx][4]
    sections = {}
    for name_off, sh_type, _flags, addr, offset, size in headers:
        name = bytes(buf[strtab + name_off : buf.index(b"\0", strtab + name_off)]).decode()
        if sh_type != 8 and offset + size > len(buf):  # 8: SHT_NOBITS, no bytes in the file
            raise FatbinError(f"section {name} passes the end of the file")
        sections[name] = (offset, size, addr)
    return sections


def strip_elf(buf: bytearray, keep: set[int], write: bool = True) -> Stats:
    """Zero the dropped payloads of every fatbin section of the ELF file in buf; check the wrappers."""
    sections = elf_sections(buf)
    found = [name for name in BLOB_SECTIONS if name in sections]
    if not found:
        raise FatbinError(f"no fatbin section ({', '.join(BLOB_SECTIONS)})")
    stats, addrs = Stats(), set()
    for name in found:
        offset, size, addr = sections[name]
        before = len(stats.blob_offsets)
        strip_region(buf, offset, offset + size, keep, stats, write=False)  # all sections parse first
        addrs |= {addr + b - offset for b in stats.blob_offsets[before:]}
    if WRAPPER_SECTION in sections:
        offset, size, _ = sections[WRAPPER_SECTION]
        for pos in range(offset, offset + size - WRAPPER.size + 1, WRAPPER.size):
            magic, _, blob_addr, _ = WRAPPER.unpack_from(buf, pos)
            if magic != WRAPPER_MAGIC or blob_addr not in addrs:
                raise FatbinError(f"{WRAPPER_SECTION} entry at {pos:#x} does not point at a parsed blob")
    if write:
        stats = Stats()
        for name in found:
            offset, size, _ = sections[name]
            strip_region(buf, offset, offset + size, keep, stats)
    stats.sections = found
    stats.stray_magic = bytes(buf).count(struct.pack("<I", FATBIN_MAGIC)) - len(stats.blob_offsets)
    return stats


def _archs(text: str) -> set[int]:
    """--keep: comma-separated SM archs as whole numbers (90, or 90,100)."""
    items = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() for t in items):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; expected SM archs as numbers, e.g. 90 or 90,100")
    return {int(t) for t in items}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("input", help="the shared library to read (e.g. libtransformer_engine.so)")
    ap.add_argument("output", nargs="?", help="where to write the stripped copy (needed unless --dry-run)")
    ap.add_argument("--keep", default="90", type=_archs, help="comma-separated SM archs to keep (default 90: sm_90 "
                    "and sm_90a)")  # fmt: skip
    ap.add_argument("--dry-run", action="store_true", help="print the histogram, write nothing")
    args = ap.parse_args(argv)
    if not args.dry_run and not args.output:
        ap.error("OUTPUT is needed unless --dry-run")
    if (
        args.output
        and os.path.exists(args.output)
        and os.path.exists(args.input)
        and os.path.samefile(args.input, args.output)
    ):
        ap.error("OUTPUT: it is the input; give another path (the tool writes a copy and never changes its input)")
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        ap.error(f"OUTPUT: {os.path.dirname(args.output)} is not a folder")
    if args.output and os.path.isdir(args.output):
        ap.error(f"OUTPUT: {args.output} is a folder; give the path of the file to write")
    keep = args.keep
    try:
        with open(args.input, "rb") as f:
            buf = bytearray(f.read())
        stats = strip_elf(buf, keep, write=not args.dry_run)
    except OSError as e:
        print(f"strip_fatbin: input: {args.input}: {e.strerror}; nothing written", file=sys.stderr)
        return 1
    except (FatbinError, IndexError, struct.error) as e:  # a file too short for the headers it claims
        reason = e if isinstance(e, FatbinError) else f"not a well-formed ELF ({type(e).__name__}: {e})"
        print(f"strip_fatbin: {reason}; nothing written", file=sys.stderr)
        return 1
    print(f"sections {', '.join(stats.sections)}: {stats.blobs} blobs, {stats.blobs_without_keep} without a kept ELF")
    for label in sorted(stats.count, key=lambda s: (s.split()[0], int(s.split("_")[1].rstrip("af")), s)):
        print(f"  {label:12s} {stats.count[label]:5d} entries {stats.size[label] / 1e6:9.2f} MB")
    print(f"zeroed {stats.zeroed_entries} entries, {stats.zeroed_bytes / 1e6:.2f} MB; keep {sorted(keep)}")
    if stats.stray_magic:
        print(f"note: {stats.stray_magic} fatbin magic(s) outside the parsed blobs, left as they are")
    if args.dry_run:
        return 0
    tmp = args.output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(buf)
    os.chmod(tmp, os.stat(args.input).st_mode & 0o777)
    os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
