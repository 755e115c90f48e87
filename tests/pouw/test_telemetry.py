"""pouw.telemetry: never raises; says plainly when there is no GPU."""
from __future__ import annotations

import sys
import types

import pytest

from pouw.telemetry import GpuInfo, NoGpu, UtilizationSampler, gpu_snapshot


def test_snapshot_never_raises() -> None:
    snap = gpu_snapshot()
    if isinstance(snap, NoGpu):
        assert snap.reason
    else:
        assert snap and all(isinstance(g, GpuInfo) for g in snap)


def test_missing_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    snap = gpu_snapshot()
    assert isinstance(snap, NoGpu) and "not installed" in snap.reason


def _fake_nvml(count: int, fail_init: bool = False) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]

    def init() -> None:
        if fail_init:
            raise RuntimeError("Driver Not Loaded")

    def not_supported(*_: object) -> None:
        raise RuntimeError("Not Supported")

    m.nvmlInit = init  # type: ignore[attr-defined]
    m.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: count  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    m.nvmlDeviceGetName = lambda h: b"Fake GPU"  # type: ignore[attr-defined]
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80, used=8)  # type: ignore[attr-defined]
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=42, memory=3)  # type: ignore[attr-defined]
    m.nvmlDeviceGetTemperature = lambda h, sensor: 55  # type: ignore[attr-defined]
    m.nvmlDeviceGetPowerUsage = not_supported  # type: ignore[attr-defined]
    return m


def test_fake_gpu_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(2))
    snap = gpu_snapshot()
    assert snap == [
        GpuInfo(0, "Fake GPU", 80, 8, 42, 55, None),
        GpuInfo(1, "Fake GPU", 80, 8, 42, 55, None),
    ]


def test_driver_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(1, fail_init=True))
    snap = gpu_snapshot()
    assert isinstance(snap, NoGpu) and "no NVIDIA driver or GPU" in snap.reason


def test_zero_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(0))
    assert isinstance(gpu_snapshot(), NoGpu)


def test_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(1))
    with UtilizationSampler(interval_s=0.01) as s:
        import time

        time.sleep(0.1)
    assert s.mean() == 42 and s.peak() == 42
