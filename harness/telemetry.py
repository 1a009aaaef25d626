"""GPU telemetry around each timed loop (NVML): clocks, temperature, power, clock-event reasons."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# NVML clock-event ("throttle") reason bits, from nvml.h
REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# reasons that mean the measurement ran on a slowed-down chip: thermal limits and hardware
# slowdowns. The software power cap (0x4) is left out: an H100/H200 under sustained matmul load sits
# at its power limit as its normal regime (seen on every compute-bound row), so flagging it would
# flag every prefill; it is still listed in throttle_reasons.
THROTTLING = 0x8 | 0x20 | 0x40 | 0x80


@dataclass(frozen=True)
class Snapshot:
    sm_clock_mhz: int
    mem_clock_mhz: int
    temp_c: int
    power_w: float
    reasons_mask: int

    @property
    def reasons(self) -> list[str]:
        return [name for bit, name in REASONS.items() if self.reasons_mask & bit]

    @property
    def throttled(self) -> bool:
        return bool(self.reasons_mask & THROTTLING)


def describe_reasons(start: Snapshot | None, end: Snapshot | None) -> str:
    parts = []
    for label, snap in (("start", start), ("end", end)):
        if snap is not None:
            parts.append(f"{label}:{'+'.join(snap.reasons) or 'none'}")
    return " ".join(parts)


def pci_bus_id(device) -> str | None:
    """The PCI bus id ("00000000:1B:00.0") of a torch CUDA device: NVML numbers GPUs on its own and
    ignores CUDA_VISIBLE_DEVICES, so a worker that sees only its GPU as cuda:0 finds it by bus id."""
    import torch

    props = torch.cuda.get_device_properties(device)
    if not hasattr(props, "pci_bus_id"):
        return None
    return f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"


def gpu_uuid(device) -> str | None:
    """The device's UUID as torch reports it (NVML's without the "GPU-" prefix), or None."""
    import torch

    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    return None if uuid is None else str(uuid)


_BUS = re.compile(r"([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-9a-fA-F]+)")


def _bus_key(text) -> tuple[int, ...] | None:
    """(domain, bus, device, function) of "00000000:1B:00.0" or "0000:1b:00.0" (bytes or str)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    match = _BUS.search(text or "")
    return tuple(int(part, 16) for part in match.groups()) if match else None


def uuid_key(text) -> str | None:
    """A GPU UUID as compared: text, lower case, without NVML's "GPU-" prefix (torch gives it without)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text.lower().removeprefix("gpu-") if text else None


def find_nvml_handle(nvml, bus_id: str | None, uuid: str | None):
    """The NVML handle of the GPU with this bus id or UUID, by walking NVML's own list (its lookup by
    bus id wants a format and a string type that differ between driver and binding versions; a
    comparison of parsed fields does not). None when nothing matches."""
    want_bus, want_uuid = _bus_key(bus_id), uuid_key(uuid)
    if want_bus is None and want_uuid is None:
        return None
    for index in range(nvml.nvmlDeviceGetCount()):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            if want_bus is not None and _bus_key(nvml.nvmlDeviceGetPciInfo(handle).busId) == want_bus:
                return handle
            if want_uuid is not None and uuid_key(nvml.nvmlDeviceGetUUID(handle)) == want_uuid:
                return handle
        except Exception:
            continue
    return None


class Telemetry:
    """Reads one GPU through NVML (found by PCI bus id or UUID, else by index when every GPU is
    visible); every read returns None when NVML is not there or the GPU is not found."""

    def __init__(self, device_index: int = 0, bus_id: str | None = None, uuid: str | None = None):
        self.handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = find_nvml_handle(pynvml, bus_id, uuid)
            if self.handle is None and "CUDA_VISIBLE_DEVICES" not in os.environ:  # never another GPU's readings
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        except Exception:
            self.handle = None

    @property
    def available(self) -> bool:
        return self.handle is not None

    def snapshot(self) -> Snapshot | None:
        if self.handle is None:
            return None
        nv = self.nvml
        try:
            reasons_fn = (
                getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                or nv.nvmlDeviceGetCurrentClocksThrottleReasons
            )
            return Snapshot(
                sm_clock_mhz=int(nv.nvmlDeviceGetClockInfo(self.handle, nv.NVML_CLOCK_SM)),
                mem_clock_mhz=int(nv.nvmlDeviceGetClockInfo(self.handle, nv.NVML_CLOCK_MEM)),
                temp_c=int(nv.nvmlDeviceGetTemperature(self.handle, nv.NVML_TEMPERATURE_GPU)),
                power_w=nv.nvmlDeviceGetPowerUsage(self.handle) / 1000.0,
                reasons_mask=int(reasons_fn(self.handle)),
            )
        except Exception:
            return None
