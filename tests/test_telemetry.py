"""NVML lookup of the GPU a worker runs on: NVML ignores CUDA_VISIBLE_DEVICES, so a worker that sees
its GPU as cuda:0 must find it by PCI bus id or UUID, never by index (that would read GPU 0)."""

import types

import pytest

from harness import telemetry
from harness.telemetry import Telemetry, find_nvml_handle


def fake_nvml(gpus):
    """A pynvml stand-in over [(bus id as NVML prints it, uuid)]: bytes, as older bindings return."""
    nv = types.SimpleNamespace()
    nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM, nv.NVML_TEMPERATURE_GPU = 1, 2, 0
    nv.nvmlInit = lambda: None
    nv.nvmlDeviceGetCount = lambda: len(gpus)
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=gpus[h][0])
    nv.nvmlDeviceGetUUID = lambda h: gpus[h][1]
    nv.nvmlDeviceGetClockInfo = lambda h, kind: 1000 + 100 * h + kind
    nv.nvmlDeviceGetTemperature = lambda h, kind: 40 + h
    nv.nvmlDeviceGetPowerUsage = lambda h: 100_000 * (h + 1)
    nv.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0

    def by_bus_id(_):  # the binding's own lookup (absent from the GPU host's pynvml): never relied on
        raise TypeError("bytes or integer address expected instead of str instance")

    nv.nvmlDeviceGetHandleByPciBusId_v2 = by_bus_id
    return nv


GPUS = [
    (b"00000000:18:00.0", b"GPU-aaaaaaaa-0000-0000-0000-000000000000"),
    (b"00000000:1B:00.0", b"GPU-bbbbbbbb-0000-0000-0000-000000000000"),
    (b"00000000:9A:00.0", "GPU-cccccccc-0000-0000-0000-000000000000"),
]


@pytest.mark.parametrize(
    "bus_id, uuid, index",
    [
        ("00000000:1B:00.0", None, 1),  # torch's format, NVML's upper-case bytes
        ("0000:1b:00.0", None, 1),  # the legacy short domain, lower case
        ("00000000:9A:00.0", None, 2),
        (None, "cccccccc-0000-0000-0000-000000000000", 2),  # torch's uuid has no GPU- prefix
        ("00000000:77:00.0", "bbbbbbbb-0000-0000-0000-000000000000", 1),  # bus id unknown: the uuid decides
    ],
)
def test_the_gpu_is_found_by_bus_id_or_uuid(bus_id, uuid, index):
    assert find_nvml_handle(fake_nvml(GPUS), bus_id, uuid) == index


def test_an_unknown_gpu_is_not_found():
    assert find_nvml_handle(fake_nvml(GPUS), "00000000:77:00.0", "dddd") is None
    assert find_nvml_handle(fake_nvml(GPUS), None, None) is None


def test_a_worker_behind_cuda_visible_devices_reads_its_own_gpu(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake_nvml(GPUS))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    snap = Telemetry(0, "00000000:9A:00.0").snapshot()  # cuda:0 of the worker is NVML's GPU 2
    assert snap is not None and snap.temp_c == 42 and snap.power_w == 300.0
    # not found and only some GPUs visible: no readings rather than GPU 0's
    assert Telemetry(0, "00000000:77:00.0").snapshot() is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert Telemetry(0, "00000000:77:00.0").snapshot().temp_c == 40  # every GPU visible: the index is right


def test_bus_ids_parse_in_every_spelling():
    assert telemetry._bus_key(b"00000000:1B:00.0") == telemetry._bus_key("0000:1b:00.0") == (0, 0x1B, 0, 0)
    assert telemetry._bus_key("garbage") is None
