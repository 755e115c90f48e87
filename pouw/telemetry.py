"""GPU telemetry through NVML (nvidia-ml-py), for the miner's status and the benchmark.

Telemetry is advisory: it never decides consensus, so :func:`gpu_snapshot` never
raises. Without a driver or a GPU it returns :class:`NoGpu` with the reason in words.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["GpuInfo", "NoGpu", "gpu_snapshot", "UtilizationSampler"]


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML sees it. A field NVML cannot read on this board is ``None``."""

    index: int
    name: str
    memory_total: int | None  # bytes
    memory_used: int | None  # bytes
    utilization_gpu: int | None  # percent of the last sample period with a kernel running
    temperature_c: int | None
    power_w: float | None


@dataclass(frozen=True)
class NoGpu:
    """No GPU telemetry is available; ``reason`` says why in plain words."""

    reason: str


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception:  # NVML raises NVMLError_NotSupported & co per field
        return None


def gpu_snapshot() -> list[GpuInfo] | NoGpu:
    """Every visible GPU's memory, utilisation, temperature and power, or :class:`NoGpu`."""
    try:
        import pynvml
    except ImportError:
        return NoGpu("nvidia-ml-py (pynvml) is not installed")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return NoGpu(f"no NVIDIA driver or GPU: NVML could not start ({exc})")
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return NoGpu("the NVIDIA driver sees no GPU")
        out: list[GpuInfo] = []
        for index in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = _try(pynvml.nvmlDeviceGetName, handle)
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            mem = _try(pynvml.nvmlDeviceGetMemoryInfo, handle)
            util = _try(pynvml.nvmlDeviceGetUtilizationRates, handle)
            temp = _try(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU)
            power_mw = _try(pynvml.nvmlDeviceGetPowerUsage, handle)
            out.append(
                GpuInfo(
                    index=index,
                    name=str(name or "unknown"),
                    memory_total=int(mem.total) if mem is not None else None,
                    memory_used=int(mem.used) if mem is not None else None,
                    utilization_gpu=int(util.gpu) if util is not None else None,
                    temperature_c=int(temp) if temp is not None else None,
                    power_w=power_mw / 1000.0 if power_mw is not None else None,
                )
            )
        return out
    except Exception as exc:
        return NoGpu(f"NVML query failed: {exc}")
    finally:
        _try(pynvml.nvmlShutdown)


@dataclass
class UtilizationSampler:
    """Samples GPU ``index`` utilisation in a background thread (for benchmarks).

    ``with UtilizationSampler() as s: train(); print(s.mean())``. Without a GPU,
    ``samples`` stays empty and ``mean()`` is ``None``.
    """

    index: int = 0
    interval_s: float = 0.1
    samples: list[int] = field(default_factory=list)
    reason: str | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            snap = gpu_snapshot()
            if isinstance(snap, NoGpu):
                self.reason = snap.reason
                return
            if self.index < len(snap) and snap[self.index].utilization_gpu is not None:
                self.samples.append(int(snap[self.index].utilization_gpu))  # type: ignore[arg-type]
            self._stop.wait(self.interval_s)

    def __enter__(self) -> UtilizationSampler:
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None

    def peak(self) -> int | None:
        return max(self.samples) if self.samples else None
