"""What the machine can do fast, and the inference precision chosen from it (``precision="auto"``).

On the CPU, bf16 autocast pays off only with native bf16 instructions (AVX512_BF16 or AMX): without them
PyTorch emulates bf16 and a forward pass is several times *slower* than fp32 (measured: r18vd at 640², 4.8 s
against 0.67 s on a Zen 3 AVX2 machine; 94 ms against 193 ms on a Zen 4 AVX512_BF16 one). int8 pays off with
VNNI (AVX512_VNNI, AVX_VNNI or AMX); without it int8 kernels run no faster than fp32 (OpenVINO on Zen 3:
231 ms int8 convolutions against 242 ms fp32).
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

__all__ = ["CpuInfo", "amp_dtype", "apply_isa_cap", "choose_precision", "cpu_info", "loader_workers", "training_amp",
           "training_autocast", "PRECISIONS"]  # fmt: skip

log = logging.getLogger("rtdetr")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: the flags that decide a fast path, in the order they are reported
_KEY_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "avx512_fp16",
)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the operating system reports it (``/proc/cpuinfo`` on Linux)."""

    model: str
    flags: frozenset[str]
    cores: int
    family: str = ""
    """x86 ``cpu family`` and ``model`` numbers, e.g. ``"23/49"`` (AMD Zen 2); empty where not reported."""
    caps: tuple[str, ...] = ()
    """The environment settings that hide instructions the CPU has (``"ONEDNN_MAX_CPU_ISA=AVX2"``,
    ``"ATEN_CPU_CAPABILITY=avx2"``): ``flags`` are then what PyTorch and OpenVINO may use, not all the CPU has."""

    @property
    def capped(self) -> str:
        """:attr:`caps` for messages and benchmark records: ``"ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2"``
        (empty without a cap)."""
        return ", ".join(self.caps)

    @property
    def onednn_cap(self) -> str:
        """The oneDNN cap (``"ONEDNN_MAX_CPU_ISA=AVX2"`` or its ``DNNL_`` alias) that hides flags, else ``""``:
        PyTorch's and OpenVINO's convolution and matrix kernels honour it."""
        return next((c for c in self.caps if "_MAX_CPU_ISA=" in c), "")

    @property
    def aten_capped(self) -> bool:
        """PyTorch's dispatch held below this AVX-512 CPU's (``ATEN_CPU_CAPABILITY=avx2``): its bf16 convolutions
        fail there."""
        return any(c.startswith("ATEN_CPU_CAPABILITY=") for c in self.caps)

    @property
    def isa(self) -> str:
        """The widest vector instruction set: ``"avx512"``, ``"avx2"``, ``"neon"`` or ``"baseline"``."""
        if "avx512f" in self.flags:
            return "avx512"
        if "avx2" in self.flags:
            return "avx2"
        if "asimd" in self.flags or platform.machine() in ("arm64", "aarch64"):
            return "neon"
        return "baseline"

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware (AVX512_BF16 or AMX-BF16): bf16 autocast is fast."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    @property
    def vnni(self) -> bool:
        """int8 dot products in hardware (AVX512_VNNI, AVX_VNNI or AMX-INT8): int8 graphs are fast."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def cpu_class(self) -> str:
        """A short name for benchmark tables: ``"avx512-amx"`` (AMX tiles: r18vd inference in bf16 2.4x as fast as
        fp32 on a Xeon), ``"avx512-bf16"`` (AVX512_BF16 alone: 1.7x, Zen 4), ``"avx512"``, ``"avx2"``, ``"neon"``."""
        if self.isa == "avx512" and self.native_bf16:
            return "avx512-amx" if "amx_bf16" in self.flags else "avx512-bf16"
        return self.isa

    @property
    def label(self) -> str:
        """:attr:`cpu_class` and the cap that made it, for messages: ``"avx2 under ONEDNN_MAX_CPU_ISA=AVX2"``."""
        return f"{self.cpu_class} under {self.capped}" if self.capped else self.cpu_class

    def as_dict(self) -> dict[str, Any]:
        """What a benchmark records about the CPU."""
        return {
            "model": self.model,
            "family/model": self.family,
            "class": self.cpu_class,
            "cores": self.cores,
            "key_flags": [f for f in _KEY_FLAGS if f in self.flags],
            "native_bf16": self.native_bf16,
            "vnni": self.vnni,
            "torch_cpu_capability": _torch_capability(),
            "isa_cap": self.capped,
            "machine": platform.machine(),
        }


def _torch_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # pragma: no cover - very old torch
        return "unknown"


def parse_cpuinfo(text: str, cores: int = 0) -> CpuInfo:
    """A :class:`CpuInfo` from the text of ``/proc/cpuinfo`` (x86 ``flags`` or ARM ``Features`` lines)."""
    model, flags, numbers = "", set[str](), {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key in ("cpu family", "model") and key not in numbers:
            numbers[key] = value.strip()
    family = f"{numbers['cpu family']}/{numbers['model']}" if len(numbers) == 2 else ""
    return CpuInfo(model or platform.processor() or "unknown", frozenset(flags), cores, family)


_AVX512 = frozenset({"avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16"})
_AMX = frozenset({"amx_bf16", "amx_int8", "amx_tile", "amx_fp16"})
#: oneDNN's ``ONEDNN_MAX_CPU_ISA`` levels and the flags each one hides (its ISA hierarchy: the AVX-512 levels
#: below VNNI exclude AVX_VNNI, which is ``avx2 | vnni``)
_ONEDNN_HIDES: dict[str, frozenset[str]] = {
    "SSE41": frozenset({"avx", "avx2", "fma", "avx_vnni"}) | _AVX512 | _AMX,
    "AVX": frozenset({"avx2", "fma", "avx_vnni"}) | _AVX512 | _AMX,
    "AVX2": frozenset({"avx_vnni"}) | _AVX512 | _AMX,
    "AVX2_VNNI": _AVX512 | _AMX,
    "AVX2_VNNI_2": _AVX512 | _AMX,
    "AVX512_CORE": frozenset({"avx_vnni", "avx512_vnni", "avx512_bf16", "avx512_fp16"}) | _AMX,
    "AVX512_CORE_VNNI": frozenset({"avx512_bf16", "avx512_fp16"}) | _AMX,
    "AVX512_CORE_BF16": frozenset({"avx512_fp16"}) | _AMX,
    "AVX512_CORE_FP16": _AMX,
    "AVX10_1_512": _AMX,
    "AVX512_CORE_AMX": frozenset({"amx_fp16"}),
    "AVX10_1_512_AMX": frozenset({"amx_fp16"}),
}


def apply_isa_cap(info: CpuInfo, environ: Mapping[str, str], torch_capability: str) -> CpuInfo:
    """``info`` with the flags hidden by the user's instruction-set caps removed.

    ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) caps the convolution and matrix kernels of PyTorch and
    OpenVINO: under ``AVX2`` a bf16 forward pass on an AMX Xeon took 20 s against 0.26 s in fp32, and OpenVINO
    refuses a bf16 hint. ``torch_capability`` below AVX512 (``ATEN_CPU_CAPABILITY=avx2``) makes PyTorch's bf16
    convolutions fail ("pack_vnni2 is only supported when avx512 is supported"), so it hides AVX-512 and AMX too.
    Unknown cap names change nothing (oneDNN ignores them as well)."""
    hidden: set[str] = set()
    notes = []
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        level = environ.get(var, "").strip().upper()
        if level in _ONEDNN_HIDES:
            hidden |= _ONEDNN_HIDES[level] & info.flags
            notes.append(f"{var}={level}")
            break
    cap = torch_capability.upper()
    if "avx512f" in info.flags and cap in ("AVX2", "DEFAULT"):
        hidden |= (_AVX512 | _AMX) & info.flags
        notes.append(f"ATEN_CPU_CAPABILITY={cap.lower()}")
    if not hidden:
        return info
    return replace(info, flags=info.flags - hidden, caps=tuple(notes))


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (cached), less what the environment hides (:func:`apply_isa_cap`). Where
    ``/proc/cpuinfo`` is missing (macOS, Windows), the flags come from PyTorch's dispatch capability (``AVX512`` ->
    avx512f, ``AVX2`` -> avx2) and bf16/VNNI count as absent."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    path = Path("/proc/cpuinfo")
    if path.is_file():
        try:
            return apply_isa_cap(
                parse_cpuinfo(path.read_text(errors="replace"), cores), os.environ, _torch_capability()
            )
        except OSError:
            pass
    cap = _torch_capability().upper()
    flags = {"avx512f", "avx2"} if cap.startswith("AVX512") else {"avx2"} if cap == "AVX2" else set()
    return CpuInfo(platform.processor() or "unknown", frozenset(flags), cores)


def choose_precision(requested: str, device: torch.device | str) -> tuple[str, str]:
    """The precision to run a PyTorch model in, and why.

    ``"auto"``: fp16 autocast on CUDA; on the CPU bf16 autocast where bf16 is native (AVX512_BF16/AMX: about 2x
    faster, AP within 0.2 points in our BCCD measurement), else fp32. An explicit choice is kept; bf16 on a CPU
    without native bf16 is kept with a warning, fp16 on the CPU is refused (no CPU kernels worth having).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {requested!r}")
    dev = torch.device(device)
    info = cpu_info()
    if requested == "auto":
        if dev.type == "cuda":
            return "fp16", "auto: fp16 autocast on CUDA"
        if dev.type != "cpu":
            return "fp32", f"auto: fp32 on {dev.type}"
        if info.native_bf16:
            return "bf16", f"auto: bf16 autocast, the CPU has native bf16 ({info.label})"
        hint = "; int8 graphs are fast here (rtdetr export --int8)" if info.vnni else ""
        return "fp32", f"auto: fp32, the CPU has no native bf16 ({info.label}){hint}"
    if requested == "fp16" and dev.type != "cuda":
        raise ValueError("fp16 inference needs a CUDA device; on the CPU use fp32 or bf16 (or precision='auto')")
    if requested == "bf16" and dev.type == "cpu" and info.aten_capped:
        raise ValueError(
            f"bf16 on the CPU fails under {info.capped} on this AVX-512 CPU (PyTorch packs bf16 weights for "
            "instructions it was told not to use); unset it, or use fp32 (precision='auto' picks fp32 here)"
        )
    if requested == "bf16" and dev.type == "cpu" and not info.native_bf16:
        log.warning(
            "bf16 on a CPU without native bf16 (%s: no AVX512_BF16/AMX) is emulated and several times slower "
            "than fp32; precision='auto' picks fp32 here",
            info.label,
        )
        return "bf16", "requested (emulated on this CPU: slow)"
    return requested, "requested"


def amp_dtype(name: str, device: torch.device | str, warn: bool = False) -> torch.dtype:
    """The autocast dtype of mixed-precision training: ``"auto"`` is fp16 on CUDA (with a GradScaler) and bf16
    elsewhere. ``warn``: log when bf16 would be emulated (a CPU without AVX512_BF16/AMX: slower than fp32)."""
    dev = torch.device(device)
    if name not in ("auto", "fp16", "bf16"):
        raise ValueError(f"amp dtype must be auto, fp16 or bf16; got {name!r}")
    dtype = torch.float16 if name == "fp16" or (name == "auto" and dev.type == "cuda") else torch.bfloat16
    if dtype == torch.float16 and dev.type == "cpu":
        raise ValueError("fp16 mixed precision needs CUDA; use train.amp_dtype=bf16 (or auto) on the CPU")
    if warn and dev.type == "cpu" and dtype == torch.bfloat16 and not cpu_info().native_bf16:
        log.warning(
            "train.amp on a CPU without native bf16 (%s): bf16 is emulated and the steps are several times "
            "slower than fp32; set train.amp=false here",
            cpu_info().label,
        )
    return dtype


def training_amp(enabled: bool | None, name: str, device: torch.device | str, warn: bool = False) -> torch.dtype | None:
    """The autocast dtype of a run with ``train.amp=enabled`` and ``train.amp_dtype=name``; None: fp32.

    ``enabled`` None (``train.amp=auto``, the default) is bf16 on a CPU with native bf16 (AVX512_BF16/AMX), where
    it was measured to train faster and to a better AP (README round 10), said once with ``warn``, and fp32 elsewhere
    (CUDA included: from-scratch training in fp16 is unmeasured here; ``train.amp=true`` turns it on).
    ``name`` ``"auto"`` is fp16 on CUDA and bf16 on a CPU with native bf16; on a CPU without it, fp32, said once
    with ``warn``: emulated bf16 is several times slower, and recipes written for GPUs (the official ones) ask for
    amp. An explicit ``"bf16"`` is kept there, with :func:`amp_dtype`'s warning."""
    dev = torch.device(device)
    if enabled is None:
        native = dev.type == "cpu" and cpu_info().native_bf16 and name in ("auto", "bf16")
        if native and warn:
            log.info(
                "train.amp=auto: bf16 autocast, the CPU has native bf16 (%s); train.amp=false trains in fp32",
                cpu_info().label,
            )
        enabled = native
    if not enabled:
        return None
    if name == "auto" and dev.type == "cpu" and not cpu_info().native_bf16:
        if warn:
            log.info(
                "train.amp: training in fp32, the CPU has no native bf16 (%s) and emulated bf16 is several times "
                "slower; train.amp_dtype=bf16 forces it",
                cpu_info().label,
            )
        return None
    return amp_dtype(name, dev, warn)


def training_autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """The autocast context of a training step in ``dtype`` (:func:`training_amp`; None: fp32, autocast off)."""
    return torch.autocast(device.type, dtype or torch.bfloat16, enabled=dtype is not None)


def loader_workers(requested: int, per_process: int = 1) -> int:
    """DataLoader workers for ``requested`` on this machine: at most the CPUs this process may use divided among
    ``per_process`` processes (more only contend for the cores; PyTorch warns at each loader). Says so once when
    it cuts."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    usable = max(1, cpus // max(1, per_process))
    if requested > usable:
        log.info("data.workers %d > the %d CPU(s) here: loading with %d worker(s)", requested, cpus, usable)
        return usable
    return requested
