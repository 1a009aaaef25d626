"""The GPU-host shell tools that can be exercised on any machine."""

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def make_wheel(folder: Path, name: str, files: dict[str, str]) -> Path:
    """A minimal pure-Python wheel holding `files` (path inside site-packages -> text)."""
    dist = f"{name}-1.0.dist-info"
    wheel_text = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    body = {**files, f"{dist}/METADATA": metadata, f"{dist}/WHEEL": wheel_text}
    record = []
    for path, text in body.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in body.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU host's install script is bash on Linux")
def test_install_wheels_merges_parts_that_share_a_top_level_folder(tmp_path):
    """Transformer Engine's core library and its torch extension both install into transformer_engine/
    and travel in different parts: the second call must add to that folder, not replace it (seen on the
    H100: `pip --target --upgrade` replaced it and TE could not find its torch library)."""
    parts = [tmp_path / "part1", tmp_path / "part2"]
    for part in parts:
        part.mkdir()
    make_wheel(parts[0], "pkg_ext", {"sharedpkg/wheel_lib/ext.py": "EXT = 1\n"})
    make_wheel(parts[1], "pkg_core", {"sharedpkg/__init__.py": "CORE = 2\n", "sharedpkg/lib/core.py": "X = 3\n"})
    env = {**os.environ, "STAGE": str(tmp_path / "stage"), "GPUENV": str(tmp_path / "env")}
    for part in parts:  # one call a part, as on the device
        done = subprocess.run(["bash", str(ROOT / "tools/install_wheels.sh"), str(part)], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
    python = tmp_path / "env/bin/python"
    check = "import sharedpkg, sharedpkg.wheel_lib.ext as e, sharedpkg.lib.core as c; print(sharedpkg.CORE, e.EXT, c.X)"
    out = subprocess.run([str(python), "-c", check], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["2", "1", "3"], out.stderr
    # a third call with nothing new installs nothing and keeps both
    again = subprocess.run(["bash", str(ROOT / "tools/install_wheels.sh")], env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0 and "installed now" not in again.stdout
    assert (tmp_path / "stage/.installed/pkg_ext-1.0-py3-none-any.whl").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="the GPU host's install script is bash on Linux")
def test_a_group_packed_as_one_xz_tree_installs_like_its_wheels(tmp_path):
    """offline_wheels.sh --txz: a folder of wheels becomes one .txz (their trees, later wheels over earlier
    ones), and install_wheels.sh unpacks it over site-packages once, as it installs wheels."""
    wheels = tmp_path / "built"
    wheels.mkdir()
    make_wheel(wheels, "aaa_first", {"sharedpkg/__init__.py": "V = 1\n", "sharedpkg/a.py": "A = 1\n"})
    make_wheel(wheels, "bbb_second", {"sharedpkg/__init__.py": "V = 2\n", "sharedpkg/b.py": "B = 2\n"})
    out = tmp_path / "parts"
    packed = subprocess.run(["bash", str(ROOT / "tools/offline_wheels.sh"), "--txz", str(out), str(wheels)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    assert [p.name for p in (out / "part1").iterdir()] == ["built.txz"]
    env = {**os.environ, "STAGE": str(tmp_path / "stage"), "GPUENV": str(tmp_path / "env")}
    done = subprocess.run(["bash", str(ROOT / "tools/install_wheels.sh"), str(out / "part1")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0 and "unpacked: built.txz" in done.stdout, done.stderr
    check = "import sharedpkg, sharedpkg.a as a, sharedpkg.b as b; print(sharedpkg.V, a.A, b.B)"
    ran = subprocess.run([str(tmp_path / "env/bin/python"), "-c", check], capture_output=True, text=True, timeout=60)
    assert ran.stdout.split() == ["2", "1", "2"], ran.stderr
    again = subprocess.run(["bash", str(ROOT / "tools/install_wheels.sh")], env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert "unpacked" not in again.stdout


def test_ctas_per_sm_is_the_tightest_of_registers_shared_memory_and_threads():
    from tools.aot_check import Report, Variant

    def ctas(regs, smem_kb, warps):
        return Report(Variant("v", None, {}, warps, 3), regs, 0, int(smem_kb * 1024)).ctas_per_sm

    assert ctas(194, 225, 8) == 1  # 225 KB + 1 KB reserved: one fits in 228 KB
    assert ctas(94, 70, 4) == 3  # shared memory: 3 × 71 KB; registers would allow 5
    assert ctas(128, 96, 8) == 2  # registers: 65536 / (128 × 256) = 2; shared memory would allow 2
    assert ctas(255, 10, 8) == 1  # registers: 65536 / (255 × 256) = 1
    assert ctas(32, 1, 4) == 16  # threads: 2048 / 128
    # a warp-specialised CTA of 8 + 4 warps at 168 registers: 168 × 384 > 65536 / 2, so one, where 8 warps fit two
    assert Report(Variant("ws", None, {}, 8, 1), 168, 0, 96 * 1024, warps=12).ctas_per_sm == 1
    assert ctas(120, 96, 8) == 2


@pytest.mark.skipif(sys.platform != "linux", reason="Triton's NVIDIA backend (ptxas) ships for Linux")
def test_every_kernel_variant_compiles_for_hopper_without_a_gpu(tmp_path):
    """tools.aot_check --quick: each kernel (prefill, varlen, decode, ragged decode) dense, paged with ids in
    their step and a step ahead, TMA pages, and the exploration variants compile for sm_90a here."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "aot.csv"
    done = subprocess.run([sys.executable, "-m", "tools.aot_check", "--quick", "--csv", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    import pandas as pd

    rows = pd.read_csv(out)
    assert len(rows) >= 13 and (rows.registers > 0).all() and (rows.shared_bytes > 0).all()
    assert rows.variant.str.contains("ids-ahead").any() and "0 failed" in done.stdout
    # the prefill kernels use Hopper's warpgroup MMA; a wait that leaves nothing in flight reads 0
    prefill = rows[rows.variant.str.startswith("prefill dense")]
    assert prefill.mma_waits.astype(str).str.fullmatch(r"\d+( \d+)*").all()
    # the ping-pong kernel: two consumer warpgroups (each with its own MMA waits) and the producer's, which
    # Gluon rounds up to a warpgroup and occupancy counts: 4 + 4 + 4 warps a CTA
    pp = rows[rows.variant.str.contains("gluon-pp")]
    assert len(pp) == 12 and (pp.cta_warps == 12).all() and (pp.mma_waits.astype(str) == "0 1 0 0 0 1 0 0").all()
    assert pp.variant.str.contains("gluon-pp-persistent").sum() == 1  # the backend's append kernel
    # GQA packed (gluon_pack=gqa): Q's halves through one 3-D TMA load each, at the one-block kernel's registers
    name = r"explore gluon-pp 128x128 w4\+4 st2"
    packed, one_block = (pp[pp.variant.str.fullmatch(name + suffix)] for suffix in (" pack4", ""))
    assert len(packed) == 1 and packed.spill_bytes.iloc[0] == 0
    assert packed.registers.iloc[0] == one_block.registers.iloc[0]
    # the persistent varlen grid (gluon_grid=persistent), dense and paged: at the one-block kernel's registers
    persistent = pp[pp.variant.str.contains("varlen persistent")]
    assert len(persistent) == 3 and (persistent.spill_bytes == 0).all()
    # the ragged-batch forms the backend runs: a dense cache, 16-token pages (a TMA load a page), 256-token pages,
    # each on the block grid and on the tile grid (only the row blocks with rows), at the same registers
    varlen = pp[pp.variant.str.contains("varlen") & ~pp.variant.str.contains("persistent")]
    assert set(persistent.registers) == set(varlen.registers)
    forms = varlen.variant.str.extract(r"varlen ?(page\d+)? ?(tiles)?").fillna("")
    assert sorted(zip(forms[0], forms[1])) == [(p, t) for p in ("", "page16", "page256") for t in ("", "tiles")]
    assert varlen.groupby(forms[0].values).registers.nunique().eq(1).all()


def test_a_production_configs_register_cap_reaches_the_compile(monkeypatch):
    """aot_check compiles the autotuner's configurations as the GPU runs them: the capped 128 × 64 with its
    128-register cap, in the prefill and the varlen kernel (it was once compiled uncapped)."""
    pytest.importorskip("triton")
    from frameworks.triton import kernels
    from tools.aot_check import variants

    monkeypatch.setattr(kernels, "INTERPRET", False)  # the GPU's configuration list, not the interpreter's one
    capped = [v for v in variants(quick=False) if v.name.startswith(("prefill dense", "varlen dense")) and v.maxnreg]
    assert [(v.name.split()[0], v.tma, v.maxnreg) for v in capped] == [
        ("prefill", True, 128), ("varlen", False, 128), ("varlen", True, 128)  # varlen: gathered, then through TMA
    ]  # fmt: skip
    assert all(v.name.endswith("128x64 w8 s2 maxnreg128") for v in capped)


def test_gpu_session_runs_cmds_before_the_sweeps_and_cmds_last_after_them(tmp_path):
    """The job's order is what the device plan relies on: CMDS, calibration, each sweep, then CMDS_LAST."""
    root = Path(__file__).resolve().parent.parent
    job = tmp_path / "job"
    env = dict(os.environ, JOB=str(job), PYTHON="true", CALIBRATE="0",
               CMDS='echo first > "$JOB/a"', CMDS_LAST='test -e "$JOB/a" && echo last > "$JOB/b"',
               SWEEPS="one|--preset smoke;two|--preset smoke")  # fmt: skip
    subprocess.run(["bash", str(root / "tools" / "gpu_session.sh")], env=env, check=True, cwd=root)
    steps = [line.split(" ", 1)[1] for line in (job / "steps.log").read_text().splitlines()]
    assert steps == ["cmds", "sweep one", "sweep two", "cmds-last", "done"]
    assert (job / "b").read_text() == "last\n" and (job / "done").exists()


def test_ab_writes_its_csv_into_a_folder_it_creates(tmp_path):
    """An A/B's --out may name a new folder (one a run): the table must not be lost to a missing folder."""
    out = tmp_path / "new" / "ab"
    cmd = [sys.executable, "-m", "tools.ab", "--preset", "smoke", "-w", "decode", "--device", "cpu", "--rounds", "1",
           "--a", "torch-naive[gqa=repeat]", "--b", "torch-naive", "--max-seconds", "0.05",
           "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = (out / "ab.csv").read_text().splitlines()
    assert rows[0].startswith("spec,side,round") and len(rows) > 2


def test_a_gpu_call_runs_its_plan_and_brings_every_row_back_in_one_tar(tmp_path):
    """tools/gpu_call.sh (one call of the lent GPU machine, here on the CPU): the plan's sweeps run with --resume and
    the commit that runs, and the job folder comes back as $OUT/res.tgz, the rows and the steps in it."""
    import tarfile

    plan = tmp_path / "plan.sh"
    plan.write_text("sweep tiny --preset smoke -b torch-naive --device cpu -m Llama-3.1-8B -w decode\nstep planned\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "JOB": str(tmp_path / "job"), "HEAD": "0123456789ab", "PLAN": str(plan),
           "BUDGET": "120", "PYTHON": sys.executable}  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "tools/gpu_call.sh")], env=env, capture_output=True, text=True,
                          timeout=170, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with tarfile.open(out / "res.tgz") as tar:
        names = tar.getnames()
        rows = tar.extractfile("job/tiny.csv").read().decode()
        steps = tar.extractfile("job/steps.log").read().decode()
    assert {"job/tiny.csv", "job/tiny.log", "job/gpu.txt"} <= set(names)
    assert rows.count("\n") == 2 and "0123456789ab" in rows.splitlines()[1]  # the header and one row of that commit
    assert "sweep tiny" in steps and "planned" in steps and steps.rstrip().endswith("done")
    plan.write_text("sweep bad --preset smoke -b no-such-backend --device cpu\n")  # a sweep that fails: exit 1
    failed = subprocess.run(["bash", str(ROOT / "tools/gpu_call.sh")], env=env, capture_output=True, text=True,
                            timeout=170, cwd=ROOT)  # fmt: skip
    assert failed.returncode == 1 and "sweep bad: exit 2 (see bad.log)" in failed.stdout
    missing = subprocess.run(["bash", str(ROOT / "tools/gpu_call.sh")], env={**env, "PLAN": str(tmp_path / "none")},
                             capture_output=True, text=True, timeout=30, cwd=ROOT)  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.strip().endswith("none is not a file")
    no_out = subprocess.run(["bash", str(ROOT / "tools/gpu_call.sh")], env={**env, "OUT": str(tmp_path / "gone")},
                            capture_output=True, text=True, timeout=30, cwd=ROOT)  # fmt: skip
    assert no_out.returncode == 2 and no_out.stderr.strip().endswith("gone is not a folder")
    late = subprocess.run(["bash", str(ROOT / "tools/gpu_call.sh")], env={**env, "BUDGET": "5"}, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert late.returncode == 1 and "sweep bad: skipped" in late.stdout  # no time to start it: said, not passed
