"""tools/strip_fatbin.py on hand-built fat binaries: the kept arch's payload untouched, the others zeroed,
every size and offset unchanged, and anything that does not parse refused before a byte is written."""

import struct

import pytest

from tools import strip_fatbin as sf

ELF_, PTX = sf.KIND_ELF, sf.KIND_PTX


def entry(kind, arch, payload, flags=0x8011, header_size=64):
    """One entry: the 64-byte header the parser reads (+ an opaque options tail), then the payload."""
    padded = payload + bytes(-len(payload) % 8)
    head = struct.pack(
        "<HHIQIIHHIIIQQQ", kind, 0x101, header_size, len(padded), len(payload), 0, 8, 1, arch, 0, 0, flags, 0, 0
    )
    return head + bytes(range(header_size - 64)) + padded


def blob(*entries):
    body = b"".join(entries)
    return struct.pack("<IHHQ", sf.FATBIN_MAGIC, 1, 16, len(body)) + body


SM90, SM90A, SM80, PTX80 = b"\x90" * 40, b"\x9a" * 24, b"\x80" * 56, b"// ptx sm_80\n" * 3


def region():
    """A fake file: 64 bytes before, a blob of sm_90, sm_90a, sm_80 cubins and sm_80 PTX, padding, 64 after."""
    b = blob(
        entry(ELF_, 90, SM90),
        entry(ELF_, 90, SM90A, flags=0x108011, header_size=112),
        entry(ELF_, 80, SM80),
        entry(PTX, 80, PTX80),
    )
    return bytearray(b"\x7f" * 64 + b + bytes(8) + b"\xee" * 64), 64, 64 + len(b) + 8


def payloads(buf, start, end):
    entries, _ = sf.parse_blob(buf, start, end)
    return [bytes(buf[e.payload]) for e in entries], entries


def test_zeroes_other_archs_and_keeps_sm90():
    buf, start, end = region()
    before = bytes(buf)
    old, _ = payloads(buf, start, end)
    stats = sf.Stats()
    sf.strip_region(buf, start, end, {90}, stats)
    new, entries = payloads(buf, start, end)
    assert len(buf) == len(before)
    assert [e.label for e in entries] == ["elf sm_90", "elf sm_90a", "elf sm_80", "ptx sm_80"]
    assert new[:2] == old[:2]  # sm_90 and sm_90a untouched
    assert new[2:] == [bytes(len(p)) for p in old[2:]] and all(any(p) for p in old[2:])
    # only payload bytes changed: headers, padding and the bytes around the region are as they were
    changed = {i for i in range(len(buf)) if buf[i] != before[i]}
    in_payloads = {i for e in entries[2:] for i in range(e.payload.start, e.payload.stop)}
    assert changed and changed <= in_payloads
    assert (stats.blobs, stats.blobs_without_keep, stats.zeroed_entries) == (1, 0, 2)
    assert stats.count == {"elf sm_90": 1, "elf sm_90a": 1, "elf sm_80": 1, "ptx sm_80": 1}


def test_blob_without_a_kept_cubin_is_left_whole():
    b = blob(entry(ELF_, 80, SM80), entry(PTX, 90, b"// ptx sm_90\n"), entry(7, 90, b"unknown kind"))
    buf = bytearray(b)
    stats = sf.Stats()
    sf.strip_region(buf, 0, len(buf), {90}, stats)
    assert buf == b and stats.blobs_without_keep == 1 and stats.zeroed_entries == 0


def test_unknown_kind_is_never_zeroed():
    b = blob(entry(ELF_, 90, SM90), entry(7, 80, b"host side?"), entry(ELF_, 75, SM80))
    buf = bytearray(b)
    sf.strip_region(buf, 0, len(buf), {90}, sf.Stats())
    new, _ = payloads(buf, 0, len(buf))
    assert new[1].startswith(b"host side?") and not any(new[2])


@pytest.mark.parametrize("where", ["entry payload", "blob size", "garbage between blobs"])
def test_corrupt_sizes_are_refused_and_nothing_changes(where):
    good = blob(entry(ELF_, 90, SM90), entry(ELF_, 80, SM80))
    bad = bytearray(blob(entry(ELF_, 90, SM90), entry(ELF_, 80, SM80)))
    if where == "entry payload":  # the second entry's payload size runs past its blob
        struct.pack_into("<Q", bad, 16 + 64 + 40 + 8, 4096)
    elif where == "blob size":
        struct.pack_into("<Q", bad, 8, 1 << 20)
    else:
        bad = b"\x01" + bad
    buf = bytearray(good + bytes(8) + bad)  # a valid blob first: it must not be zeroed either
    before = bytes(buf)
    with pytest.raises(sf.FatbinError):
        sf.strip_region(buf, 0, len(buf), {90}, sf.Stats())
    assert buf == before


def elf_file(fatbin, wrappers_at, fatbin_addr=0x10000):
    """A minimal little-endian ELF64: sections .nv_fatbin, .nvFatBinSegment (wrappers at the given
    offsets into .nv_fatbin) and .shstrtab, then the section headers."""
    names = b"\0.nv_fatbin\0.nvFatBinSegment\0.shstrtab\0"
    seg = b"".join(struct.pack("<IIQQ", sf.WRAPPER_MAGIC, 1, fatbin_addr + off, 0) for off in wrappers_at)
    body = bytearray(64)
    offsets = []
    for data in (fatbin, seg, names):
        body += bytes(-len(body) % 8)
        offsets.append(len(body))
        body += data
    body += bytes(-len(body) % 8)
    shoff = len(body)

    def sh(name, addr, i, data):
        return struct.pack("<IIQQQQIIQQ", name, 1 if i < 2 else 3, 2, addr, offsets[i], len(data), 0, 0, 8, 0)

    body += bytes(64) + sh(1, fatbin_addr, 0, fatbin) + sh(12, 0x20000, 1, seg) + sh(29, 0, 2, names)
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    body[:64] = ident + struct.pack("<HHIQQQIHHHHHH", 3, 190, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 4, 3)
    return body


def test_elf_file_same_size_and_kept_cubins(tmp_path):
    b1 = blob(entry(ELF_, 90, SM90), entry(ELF_, 80, SM80))
    b2 = blob(entry(ELF_, 100, SM80), entry(ELF_, 90, SM90A, flags=0x108011))
    fatbin = b1 + bytes(8) + b2
    src, out = tmp_path / "lib.so", tmp_path / "out.so"
    src.write_bytes(elf_file(fatbin, [0, len(b1) + 8]))
    assert sf.main([str(src), str(out)]) == 0
    a, b = src.read_bytes(), out.read_bytes()
    assert len(a) == len(b) and a != b
    assert a.count(SM90) == b.count(SM90) == 1 and a.count(SM90A) == b.count(SM90A) == 1
    assert a.count(SM80) == 2 and b.count(SM80) == 0


def test_elf_wrapper_pointing_nowhere_writes_nothing(tmp_path):
    b1 = blob(entry(ELF_, 90, SM90), entry(ELF_, 80, SM80))
    src, out = tmp_path / "lib.so", tmp_path / "out.so"
    src.write_bytes(elf_file(b1, [8]))  # the wrapper points into the blob, not at its start
    assert sf.main([str(src), str(out)]) == 1
    assert not out.exists() and not (tmp_path / "out.so.tmp").exists()


def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, capsys):
    """A missing file, a folder, a file too short for an ELF header and a --keep that is not numbers: one line on
    stderr each (status 1, argparse's 2 for --keep), no traceback, no output file."""
    from tools.strip_fatbin import main

    short = tmp_path / "four.bin"
    short.write_bytes(b"\x7fELF")
    out = tmp_path / "out.so"
    for args, message in [
        ([str(tmp_path / "none.so"), str(out)], "input: " + str(tmp_path / "none.so") + ": No such file"),
        ([str(tmp_path), str(out)], "Is a directory"),
        ([str(short), str(out)], "not a well-formed ELF"),
    ]:
        assert main(args) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "nothing written" in err
    with pytest.raises(SystemExit) as stop:
        main([str(short), str(out), "--keep", "abc"])
    assert stop.value.code == 2 and "'abc' is not valid; expected SM archs as numbers" in capsys.readouterr().err
    assert not out.exists()


def test_an_output_that_is_the_input_a_folder_or_in_no_folder_is_refused_before_reading(tmp_path, capsys):
    """The tool writes a copy: an output that is its input, a folder, or a path in a folder that does not exist is
    argparse's one line (status 2), and the input is left as it was."""
    from tools.strip_fatbin import main

    lib = tmp_path / "lib.so"
    lib.write_bytes(b"\x7fELF" + bytes(60))
    for output, said in [(str(lib), "OUTPUT: it is the input"), (str(tmp_path), "is a folder"),
                         (str(tmp_path / "none" / "o.so"), "is not a folder")]:  # fmt: skip
        with pytest.raises(SystemExit) as stop:
            main([str(lib), output])
        assert stop.value.code == 2 and said in capsys.readouterr().err
    assert lib.read_bytes() == b"\x7fELF" + bytes(60) and sorted(p.name for p in tmp_path.iterdir()) == ["lib.so"]
