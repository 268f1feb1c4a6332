"""CPU detection and ``precision="auto"``: the choice must follow the instruction set, not the vendor or the
vector width (an AVX-512 CPU without AVX512_BF16, e.g. Skylake-X, emulates bf16 and must get fp32)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rtdetr.engine import hardware
from rtdetr.engine.backend import TorchDetector, open_detector
from rtdetr.engine.hardware import CpuInfo, choose_precision, parse_cpuinfo
from rtdetr.engine.hardware import cpu_info as real_cpu_info  # the conftest pins hardware.cpu_info

BASE = "fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c"
# flags as /proc/cpuinfo prints them on the machines named (trimmed to what matters)
CPUS = {
    "zen3": f"{BASE} avx2 fma bmi2",
    "zen4": f"{BASE} avx2 fma avx512f avx512dq avx512_bf16 avx512_vnni avx512vl",
    "skylake_x": f"{BASE} avx2 fma avx512f avx512dq avx512bw avx512vl",
    "cascade_lake": f"{BASE} avx2 fma avx512f avx512bw avx512vl avx512_vnni",
    "alder_lake": f"{BASE} avx2 fma avx_vnni",
    "sapphire_rapids": f"{BASE} avx2 fma avx_vnni avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8",
}
EXPECTED = {  # name: (isa, class, native bf16, vnni, auto precision on the CPU)
    "zen3": ("avx2", "avx2", False, False, "fp32"),
    "zen4": ("avx512", "avx512-bf16", True, True, "bf16"),
    "skylake_x": ("avx512", "avx512", False, False, "fp32"),
    "cascade_lake": ("avx512", "avx512", False, True, "fp32"),
    "alder_lake": ("avx2", "avx2", False, True, "fp32"),
    "sapphire_rapids": ("avx512", "avx512-amx", True, True, "bf16"),
}


def _cpuinfo_text(flags: str, model: str = "Test CPU") -> str:
    block = (
        f"processor\t: 0\nvendor_id\t: X\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: {model}\n"
        f"flags\t\t: {flags}\nbogomips\t: 1\n\n"
    )
    return block + block.replace("processor\t: 0", "processor\t: 1")


def _use_cpu(monkeypatch: pytest.MonkeyPatch, name: str) -> CpuInfo:
    info = parse_cpuinfo(_cpuinfo_text(CPUS[name], name), cores=2)
    monkeypatch.setattr(hardware, "cpu_info", lambda: info)
    return info


@pytest.mark.parametrize("name", sorted(CPUS))
def test_parse_and_classify(name: str) -> None:
    info = parse_cpuinfo(_cpuinfo_text(CPUS[name], f"{name} model"), cores=2)
    isa, cls, bf16, vnni, _ = EXPECTED[name]
    assert (info.model, info.isa, info.cpu_class, info.native_bf16, info.vnni) == (
        f"{name} model",
        isa,
        cls,
        bf16,
        vnni,
    )
    d = info.as_dict()
    assert d["class"] == cls and d["native_bf16"] == bf16 and "avx2" in d["key_flags"]
    assert d["family/model"] == "25/17"  # "model name" is not mistaken for "model"
    assert "sse2" not in d["key_flags"]  # only the flags that decide a path are recorded


def test_parse_arm_features() -> None:
    info = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd evtstrm aes bf16\nCPU implementer\t: 0x41\n")
    assert info.isa == "neon" and not info.native_bf16


@pytest.mark.parametrize("name", sorted(CPUS))
def test_auto_follows_the_instruction_set(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _use_cpu(monkeypatch, name)
    precision, reason = choose_precision("auto", "cpu")
    assert precision == EXPECTED[name][4]
    assert reason.startswith("auto:") and EXPECTED[name][1] in reason
    if EXPECTED[name][3] and precision == "fp32":
        assert "int8" in reason  # VNNI without bf16: point at the int8 export


def test_auto_on_cuda_and_explicit_choices(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _use_cpu(monkeypatch, "zen3")
    assert choose_precision("auto", "cuda")[0] == "fp16"
    assert choose_precision("fp32", "cpu") == ("fp32", "requested")
    with pytest.raises(ValueError, match="CUDA"):
        choose_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        choose_precision("int4", "cpu")
    with caplog.at_level(logging.WARNING, logger="rtdetr"):
        assert choose_precision("bf16", "cpu")[0] == "bf16"  # the user's choice is kept...
    assert "slower" in caplog.text  # ...with a warning
    _use_cpu(monkeypatch, "zen4")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rtdetr"):
        assert choose_precision("bf16", "cpu") == ("bf16", "requested")
    assert not caplog.text


@pytest.mark.parametrize("name", ["zen3", "zen4"])
def test_detector_runs_the_chosen_precision(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _use_cpu(monkeypatch, name)
    det = open_detector("rtdetr_r18vd", "cpu", decoder={"num_layers": 1})
    assert isinstance(det, TorchDetector)
    assert det.precision == EXPECTED[name][4] and det.precision_reason.startswith("auto:")
    seen = {}

    def spy(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        seen["dtype"] = out.dtype

    det.module().backbone.conv1.register_forward_hook(spy)  # type: ignore[union-attr]
    raw = det.infer(torch.rand(1, 3, 64, 64), torch.tensor([[64, 64]]))
    assert seen["dtype"] == (torch.bfloat16 if EXPECTED[name][4] == "bf16" else torch.float32)
    assert raw["pred_logits"].dtype == torch.float32  # outputs are always handed back in fp32


def test_graph_refuses_a_torch_precision(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="fixed at export"):
        open_detector("model.onnx", precision="bf16")


def test_this_machine_is_described() -> None:
    d = real_cpu_info().as_dict()
    assert d["cores"] >= 1 and d["class"] in ("avx512-amx", "avx512-bf16", "avx512", "avx2", "neon", "baseline")
    assert isinstance(d["torch_cpu_capability"], str)


def test_the_suite_runs_on_a_pinned_cpu() -> None:
    assert hardware.cpu_info().model == "pinned test CPU" and choose_precision("auto", "cpu")[0] == "fp32"


def test_loader_workers_fit_the_cpus_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A recipe's data.workers 4 on a 2-CPU machine made PyTorch warn at each loader ('suggested max number of
    worker ... is 2') and the workers contend for the cores."""
    import os

    from rtdetr.engine.hardware import loader_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with caplog.at_level(logging.INFO, logger="rtdetr"):
        assert loader_workers(4) == 2
    assert "data.workers 4 > the 2 CPU(s) here: loading with 2 worker(s)" in caplog.text
    assert loader_workers(2) == 2 and loader_workers(0) == 0  # within: as asked (0: the main process loads)
    assert loader_workers(4, per_process=4) == 1  # four DDP processes share the two CPUs


@pytest.mark.parametrize("name", sorted(CPUS))
def test_training_amp_follows_the_cpu(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``train.amp=true`` (the official recipes ask for it, written for GPUs) trained in emulated bf16 on a CPU
    without native bf16, several times slower than fp32, with only a warning; auto now means fp32 there, as
    ``precision="auto"`` does for inference. An explicit bf16 is still obeyed."""
    from rtdetr.engine.hardware import training_amp

    _use_cpu(monkeypatch, name)
    native = EXPECTED[name][2]
    with caplog.at_level(logging.INFO, logger="rtdetr"):
        assert training_amp(True, "auto", "cpu", warn=True) == (torch.bfloat16 if native else None)
    assert ("training in fp32, the CPU has no native bf16" in caplog.text) is not native
    assert training_amp(True, "bf16", "cpu") == torch.bfloat16 and training_amp(False, "bf16", "cpu") is None
    assert training_amp(True, "auto", "cuda") == torch.float16  # the dtype only: no GPU needed
    # train.amp=auto (the default): bf16 where native, said once; fp32 elsewhere, CUDA included, and with fp16 asked
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rtdetr"):
        assert training_amp(None, "auto", "cpu", warn=True) == (torch.bfloat16 if native else None)
    assert ("train.amp=auto: bf16 autocast, the CPU has native bf16" in caplog.text) is native
    assert training_amp(None, "bf16", "cpu") == (torch.bfloat16 if native else None)
    assert training_amp(None, "auto", "cuda") is None and training_amp(None, "fp16", "cpu") is None


@pytest.mark.parametrize("name", ["sapphire_rapids", "zen3"])
def test_default_training_precision_follows_the_cpu(
    name: str, tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``train.amp`` given: a training step's forward pass runs under bf16 autocast on a CPU with native bf16
    (1.45x the steps in the same time, +2.9 AP at 8 minutes: README round 10) and in fp32 on one without
    (emulated: slower)."""
    from rtdetr.engine.trainer import Trainer
    from tests.engine.conftest import tiny_config

    _use_cpu(monkeypatch, name)
    expected = torch.bfloat16 if EXPECTED[name][2] else torch.float32
    tr = Trainer(tiny_config(tiny_data, tmp_path, "train.max_iters_per_epoch=1", "train.epochs=1"))
    assert tr.cfg.train.amp is None and (tr.amp_dtype or torch.float32) == expected
    seen: list[torch.dtype] = []
    forward = tr.net.forward
    tr.net.forward = lambda *a, **k: seen.append((out := forward(*a, **k))["pred_logits"].dtype) or out  # type: ignore[method-assign]
    tr.fit()
    assert seen and set(seen) == {expected}


def test_official_recipe_trains_in_fp32_on_a_cpu_without_bf16(tiny_data: dict, tmp_path) -> None:  # noqa: ANN001
    """The official recipe's amp: true on the pinned AVX2 CPU: a training step runs in fp32, no autocast."""
    from rtdetr.engine.trainer import Trainer
    from rtdetr.recipe import load_recipe
    from tests.engine.conftest import tiny_config

    assert load_recipe("rtdetrv2_r18vd_120e_coco").train.amp is True
    tr = Trainer(tiny_config(tiny_data, tmp_path, "train.amp=true", "train.max_iters_per_epoch=1", "train.epochs=1"))
    assert tr.amp_dtype is None and not tr.scaler.is_enabled()
    seen: list[torch.dtype] = []
    forward = tr.net.forward
    tr.net.forward = lambda *a, **k: seen.append((out := forward(*a, **k))["pred_logits"].dtype) or out  # type: ignore[method-assign]
    tr.fit()
    assert seen and set(seen) == {torch.float32}


CAPS = [  # (environment, torch capability, cpu): (isa, class, native bf16, vnni, hidden by)
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX512", "sapphire_rapids", ("avx2", "avx2", False, False)),
    ({"ONEDNN_MAX_CPU_ISA": "avx2_vnni"}, "AVX512", "sapphire_rapids", ("avx2", "avx2", False, True)),
    ({"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, "AVX512", "zen4", ("avx512", "avx512", False, False)),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, "AVX512", "sapphire_rapids", ("avx512", "avx512", False, True)),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "AVX512", "sapphire_rapids", ("avx512", "avx512-bf16", True, True)),
    ({}, "AVX2", "zen4", ("avx2", "avx2", False, False)),  # ATEN_CPU_CAPABILITY=avx2
    ({"DNNL_MAX_CPU_ISA": "avx2"}, "AVX2", "zen4", ("avx2", "avx2", False, False)),  # both caps
]


@pytest.mark.parametrize(("env", "cap", "name", "expected"), CAPS)
def test_isa_caps_hide_what_the_kernels_may_not_use(
    monkeypatch: pytest.MonkeyPatch, env: dict, cap: str, name: str, expected: tuple
) -> None:
    raw = parse_cpuinfo(_cpuinfo_text(CPUS[name], name), cores=2)
    info = hardware.apply_isa_cap(raw, env, cap)
    assert (info.isa, info.cpu_class, info.native_bf16, info.vnni) == expected
    assert info.capped and (next(iter(env.values())).upper() in info.capped if env else "ATEN" in info.capped)
    assert info.as_dict()["isa_cap"] == info.capped and info.model == raw.model
    oned = [f"{k}={v.upper()}" for k, v in env.items()]
    assert info.onednn_cap == (oned[0] if oned else "") and info.aten_capped == (cap == "AVX2")
    monkeypatch.setattr(hardware, "cpu_info", lambda: info)
    precision, reason = choose_precision("auto", "cpu")
    assert precision == ("bf16" if expected[2] else "fp32") and info.capped in reason


@pytest.mark.parametrize(
    ("env", "cap", "name"),
    [({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2", "zen3"), ({"ONEDNN_MAX_CPU_ISA": "ALL"}, "AVX512", "zen4"),
     ({"ONEDNN_MAX_CPU_ISA": "AVX9000"}, "AVX512", "zen4"), ({}, "AVX512", "zen4")],
)  # fmt: skip
def test_caps_that_hide_nothing_leave_the_cpu_as_it_is(env: dict, cap: str, name: str) -> None:
    raw = parse_cpuinfo(_cpuinfo_text(CPUS[name], name), cores=2)
    assert hardware.apply_isa_cap(raw, env, cap) == raw


def test_bf16_is_refused_under_an_aten_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an AVX-512 CPU under ATEN_CPU_CAPABILITY=avx2, PyTorch's bf16 convolution raised "pack_vnni2 is only
    supported when avx512 is supported" (AMX Xeon, torch 2.13): refuse it up front, naming the setting."""
    raw = parse_cpuinfo(_cpuinfo_text(CPUS["sapphire_rapids"]), cores=2)
    monkeypatch.setattr(hardware, "cpu_info", lambda: hardware.apply_isa_cap(raw, {}, "AVX2"))
    with pytest.raises(ValueError, match="ATEN_CPU_CAPABILITY=avx2"):
        choose_precision("bf16", "cpu")
    assert choose_precision("fp32", "cpu") == ("fp32", "requested")


def test_this_machine_under_an_avx2_cap_has_no_native_bf16() -> None:
    """The real /proc/cpuinfo read in a process started with ONEDNN_MAX_CPU_ISA=AVX2: whatever this CPU is, bf16
    and VNNI are hidden and auto picks fp32 (on an AMX Xeon bf16 took 20 s a forward pass there, fp32 0.26 s)."""
    code = (
        "import json; from rtdetr.engine.hardware import cpu_info, choose_precision; i = cpu_info(); "
        "print(json.dumps([i.native_bf16, i.vnni, i.isa, choose_precision('auto', 'cpu')[0]]))"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    native, vnni, isa, auto = json.loads(out.stdout.splitlines()[-1])
    assert (native, vnni, auto) == (False, False, "fp32") and isa in ("avx2", "baseline")
