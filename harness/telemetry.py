"""GPU telemetry around each timed loop (NVML): clocks, temperature, power, clock-event reasons."""

from __future__ import annotations

import os
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
    """The NVML bus id ("00000000:1B:00.0") of a torch CUDA device: NVML numbers GPUs on its own and
    ignores CUDA_VISIBLE_DEVICES, so a worker that sees only its GPU as cuda:0 finds it by bus id."""
    import torch

    props = torch.cuda.get_device_properties(device)
    if not hasattr(props, "pci_bus_id"):
        return None
    return f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"


class Telemetry:
    """Reads one GPU through NVML (found by PCI bus id, else by index); every read returns None when
    NVML is not there."""

    def __init__(self, device_index: int = 0, bus_id: str | None = None):
        self.handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            try:  # by bus id where torch gives one; NVML's index only matches with every GPU visible
                self.handle = pynvml.nvmlDeviceGetHandleByPciBusId_v2(bus_id) if bus_id else None
            except Exception:
                self.handle = None
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
