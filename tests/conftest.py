"""Shared fixtures. Tests never download anything: models are randomly initialised, data are generated."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch

from rtdetr.engine import hardware
from rtdetr.engine.hardware import parse_cpuinfo

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of `make test`'s two processes: one thread each, subprocesses too
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_restore() -> None:
    """Each test starts from seed 0 and leaves the default dtype and PyTorch's thread count as it found them: the
    2 threads that ``rtdetr demo`` run in process sets must not stay (beside the other test process, two threads
    on two cores made a later 40 s test take 290 s)."""
    torch.manual_seed(0)
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


#: the CPU every test sees unless it says otherwise: AVX2 without bf16/VNNI, so ``precision="auto"`` means fp32
#: and no result depends on the class of the machine that runs the suite (tests/engine/test_hardware.py checks
#: the choice on each class, and the real machine's description)
PINNED_CPU = parse_cpuinfo("model name\t: pinned test CPU\nflags\t: sse2 avx avx2 fma\n", cores=2)


@pytest.fixture(autouse=True)
def _pin_cpu_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_info", lambda: PINNED_CPU)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` beside the checkout, or ``$RTDETR_SHARED_DATASETS``; skips when absent."""
    root = Path(os.environ.get("RTDETR_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    if not root.is_dir():
        pytest.skip(f"shared datasets not found at {root} (set RTDETR_SHARED_DATASETS to run this test)")
    return root


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (not a package) as a module, with ``benchmarks/`` on ``sys.path`` while it
    loads so that its imports of sibling scripts resolve."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None, f"no benchmark script {name}.py in {BENCHMARKS}"
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return mod


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, so fusion/parity tests can fail."""
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0.0, 0.2)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
            elif name.endswith(".weight") and buf.dim() == 1:  # FrozenBatchNorm2d affine buffers
                buf.uniform_(0.5, 1.5)
            elif name.endswith(".bias") and buf.dim() == 1:
                buf.normal_(0.0, 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)


class RunCaptured(Exception):
    """Raised by the :func:`captured_run` stand-in trainer once it has the run config."""


@pytest.fixture
def captured_run(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Replace the trainer by a stand-in that records the resolved :class:`RunConfig` (``["cfg"]``) and raises
    :class:`RunCaptured`: what an entry point would train, without training."""
    from rtdetr.engine import trainer

    seen: dict = {}

    def record(self, cfg, *args) -> None:  # noqa: ANN001, ANN002
        seen["cfg"] = cfg
        raise RunCaptured

    monkeypatch.setattr(trainer.Trainer, "__init__", record)
    return seen


@pytest.fixture
def compile_calls(monkeypatch: pytest.MonkeyPatch) -> list[CompiledCall]:
    """``torch.compile`` replaced by a stand-in that compiles nothing: the module runs as it is, and each call
    appends what it ran with (the returned list)."""
    from torch._dynamo import config as dynamo_config
    from torch._inductor import config as inductor_config

    calls: list[CompiledCall] = []

    def fake_compile(module: torch.nn.Module, **kwargs: object) -> object:
        def run(x: torch.Tensor) -> object:
            freezing, limit = bool(inductor_config.freezing), int(dynamo_config.recompile_limit)
            calls.append(CompiledCall(tuple(x.shape), freezing, limit, torch.is_inference_mode_enabled()))
            return module(x)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    return calls


@dataclass(frozen=True)
class CompiledCall:
    """One call of a module compiled under :func:`compile_calls`: the input's shape, whether inductor's freezing
    was on, dynamo's recompile limit and whether inference mode was on."""

    shape: tuple[int, ...]
    freezing: bool
    recompile_limit: int
    inference: bool
