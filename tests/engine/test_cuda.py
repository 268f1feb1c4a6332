"""The GPU path. Tests marked ``cuda`` need a CUDA device and are skipped with a reason where there is none (the
default CI run is CPU-only); the rest check, on the CPU, what the GPU path is built from (mixed-precision training
steps, the option checks).

Where tensors move: data, targets, denoising groups, criterion, EMA and post-processing stay on the model's
device; the Hungarian matcher builds the ``[B, Q, N]`` cost matrices of all matched groups there, copies them to
the CPU for scipy in one copy and returns the indices to the device in one asynchronous copy
(``rtdetr.loss.matcher.HungarianMatcher.match_many``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from rtdetr.engine.backend import TorchDetector
from rtdetr.engine.ema import ModelEMA
from rtdetr.engine.hardware import amp_dtype
from rtdetr.engine.hardware import cpu_info as real_cpu_info  # the conftest pins hardware.cpu_info
from rtdetr.loss import RTDETRCriterion
from rtdetr.loss.criterion import to_float32
from rtdetr.models import PostProcessor, create_model
from rtdetr.ops.compare import denoising_noise_on_cpu, max_query_set_diff, randomize_for_parity, untied_input
from tests.conftest import randomize_batchnorm
from tests.engine.conftest import TINY_MODEL, tiny_config

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")

TARGETS = [
    {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.3, 0.4], [0.75, 0.7, 0.3, 0.3]])},
    {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.45, 0.5, 0.3]])},
]


def _on(targets: list[dict], device: str) -> list[dict]:
    return [{k: v.to(device) for k, v in t.items()} for t in targets]


def _train_step(
    model: torch.nn.Module, device: str, dtype: torch.dtype | None, seed: int = 0, init_scale: float = 2.0**8
) -> dict:
    """One optimizer step as the trainer takes it: autocast forward, fp32 criterion, GradScaler for fp16, gradient
    clipping, AdamW, EMA. Returns the loss terms, the gradient norm, the scaler's scale after the step, the EMA's
    device, and the decoder's gradient of the denoising terms alone (see :func:`_close_to_fp32`). The denoising
    noise comes from the CPU generator on every device (the same groups everywhere).

    ``init_scale``: GradScaler's default 2^16 overflows fp16 on this first step of a random model (gradient norm
    ~130, x 65536 > 65504), and the scaler then skips the step, as it should; 2^8 lets the compared step run."""
    torch.manual_seed(seed)
    model = model.to(device).train()
    criterion = RTDETRCriterion(3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    scaler = torch.amp.GradScaler(device, init_scale=init_scale, enabled=dtype == torch.float16)
    ema = ModelEMA(model, warmups=1)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64, generator=g).to(device)
    targets = _on(TARGETS, device)
    torch.manual_seed(seed)  # the same denoising groups in every precision and on every device
    with (
        denoising_noise_on_cpu(),
        torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        out = model(x, targets)
    losses = criterion(to_float32(out), targets)  # the criterion runs in fp32, as in the trainer
    loss = sum(losses.values())
    head = [q for n, q in model.named_parameters() if n.startswith("decoder.")]
    dn = scaler.scale(sum(v for k, v in losses.items() if "_dn_" in k))
    dn_grad = torch.autograd.grad(dn, head, retain_graph=True, allow_unused=True)
    dn_grad = torch.cat([(q.flatten().double() if q is not None else torch.zeros(p.numel(), dtype=torch.float64,
                          device=p.device)) for q, p in zip(dn_grad, head)]) / scaler.get_scale()  # fmt: skip
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1, foreach=True)
    scaler.step(opt)
    scaler.update()
    ema.update(model)
    return {
        "loss": float(loss.detach()),
        "dn_decoder_grad": dn_grad.cpu(),
        "terms": {k: float(v.detach()) for k, v in losses.items()},
        "grad_norm": float(norm),
        "scale": float(scaler.get_scale()) if scaler.is_enabled() else None,
        "ema_device": next(ema.module.parameters()).device.type,
        "loss_device": loss.device.type,
    }


def _tiny(seed: int = 0, num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("rtdetr_r18vd", num_classes=num_classes, **TINY_MODEL)


# ----------------------------------------------------------------------------------------------- on any machine
@pytest.mark.parametrize("seed", [0, 3])  # 3: one whose matched queries differ between fp32 and bf16
def test_cpu_bf16_amp_step_matches_fp32(seed: int) -> None:
    """The mixed-precision step the trainer takes on a CPU (bf16 autocast, fp32 criterion): finite, and within
    a stated tolerance of the fp32 step (bf16 keeps 8 bits of mantissa: ~1% per layer)."""
    ref = _train_step(_tiny(seed), "cpu", None, seed)
    amp = _train_step(_tiny(seed), "cpu", torch.bfloat16, seed)
    _close_to_fp32(amp, ref)
    assert amp["loss"] != ref["loss"]  # autocast really ran
    if seed == 0:  # the tolerance tells steps apart: other denoising groups (a different draw) fail it
        with pytest.raises(AssertionError):
            _close_to_fp32(_train_step(_tiny(seed), "cpu", torch.bfloat16, seed + 1), ref)


def _close_to_fp32(amp: dict, ref: dict) -> None:
    """Every loss term finite; the denoising terms within 1% of fp32 and the decoder's gradient of them pointing
    the same way (cosine >= 0.97).

    Only the denoising terms are compared because only their queries are fixed: the matched terms (final,
    auxiliary, encoder) follow the encoder's top-k selection and the Hungarian assignment, whose near-ties on a
    random model resolve differently in another precision. Measured on the CPU, bf16 against fp32, seeds 0-7:
    the matched terms moved 6-22% on 4 of 8 seeds (0.02-0.2% on the others), the denoising terms at most 0.25%,
    the denoising gradient's cosine 0.984-0.995. On an H200 the whole bf16 loss was 6.5% off on seed 0 (a flip,
    not a bug: the same comparison on the CPU flips on seed 3)."""
    assert all(torch.isfinite(torch.tensor(v)) for v in amp["terms"].values())
    dn_amp, dn_ref = (sum(v for k, v in r["terms"].items() if "_dn_" in k) for r in (amp, ref))
    assert dn_amp == pytest.approx(dn_ref, rel=0.01)
    cos = torch.nn.functional.cosine_similarity(amp["dn_decoder_grad"], ref["dn_decoder_grad"], dim=0)
    assert cos >= 0.97, f"denoising gradient cosine {float(cos):.3f}"
    assert torch.isfinite(torch.tensor(amp["grad_norm"]))


def test_amp_dtype_choice() -> None:
    assert amp_dtype("auto", "cpu") == torch.bfloat16 and amp_dtype("auto", "cuda") == torch.float16
    assert amp_dtype("bf16", "cuda") == torch.bfloat16
    with pytest.raises(ValueError, match="needs CUDA"):
        amp_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="auto, fp16 or bf16"):
        amp_dtype("fp8", "cpu")


def test_gpu_options_are_checked_on_the_cpu() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        TorchDetector(model, "cpu", cuda_graph=True)
    with pytest.raises(ValueError, match="compile mode must be one of"):
        TorchDetector(model, "cpu", compile="fastest")
    with pytest.raises(ValueError, match="either cuda_graph or compile"):
        TorchDetector(model, "cuda", cuda_graph=True, compile="default")
    from rtdetr.cli import main

    with pytest.raises(SystemExit):  # argparse refuses an unknown compile mode
        main(["predict", "rtdetr_r18vd", "x.jpg", "--compile", "fastest"])


def test_compiled_cpu_inference_freezes_the_weights(compile_calls: list) -> None:
    """On the CPU a compiled module runs (and so compiles) with inductor's freezing on: weights packed for oneDNN
    once and activations fused (r18vd bf16 at 640 on an AMX Xeon: network 55 ms against 90 eager; fp32 compiled
    without it was slower than eager). Seen through a stand-in for torch.compile; nothing compiles here."""
    from torch._inductor import config as inductor_config

    x, sizes = torch.rand(1, 3, 64, 64), torch.tensor([[64, 64]])
    compiled = TorchDetector(_tiny().eval(), "cpu", precision="fp32", fuse=True, compile="default")
    eager = TorchDetector(_tiny().eval(), "cpu", precision="fp32", fuse=True)
    with torch.inference_mode():
        compiled.detect(x, sizes)
        eager.detect(x, sizes)  # not compiled: no call
    assert [c.freezing for c in compile_calls] == [True] and not inductor_config.freezing  # set for the call only


def test_a_compiled_detector_pads_a_smaller_batch_to_a_size_it_compiled(compile_calls: list) -> None:
    """Each new batch size compiles a graph (about 30 s on 2 CPU cores) and dynamo holds 8 per function before it
    silently falls back to eager: a predictor's last batch or a service's partly filled one runs padded to the
    smallest size already compiled at that decoder depth, with the real images' outputs unchanged."""
    torch.manual_seed(0)
    model = _tiny().eval()
    randomize_batchnorm(model)
    x = torch.rand(6, 3, 64, 64)
    sizes = torch.tensor([[64, 64]] * 6)
    det = TorchDetector(model, "cpu", precision="fp32", fuse=True, compile="default")
    eager = TorchDetector(model, "cpu", precision="fp32", fuse=True)
    with torch.inference_mode():
        det.infer(x[:4], sizes[:4])
        out3 = det.infer(x[:3], sizes[:3])  # padded to 4
        det.infer(x, sizes)  # larger than any: compiles 6
        out5 = det.infer(x[:5], sizes[:5])  # padded to 6, not 4
        det.set_decoder_depth(1)
        det.infer(x[:3], sizes[:3])  # another depth: nothing compiled there yet
        det.set_decoder_depth(2)
        ref3, ref5 = eager.infer(x[:3], sizes[:3]), eager.infer(x[:5], sizes[:5])
    assert [c.shape[0] for c in compile_calls] == [4, 4, 6, 6, 3]
    assert all(c.recompile_limit >= 64 for c in compile_calls)  # room for batch sizes x depths
    for out, ref in ((out3, ref3), (out5, ref5)):
        assert out["pred_logits"].shape == ref["pred_logits"].shape
        torch.testing.assert_close(out["pred_logits"], ref["pred_logits"], rtol=0, atol=1e-5)
        torch.testing.assert_close(out["pred_boxes"], ref["pred_boxes"], rtol=0, atol=1e-5)
    from torch._dynamo import config as dynamo_config

    assert dynamo_config.recompile_limit == 8  # set for the calls only


def test_a_sealed_warm_up_compiles_nothing_more(compile_calls: list) -> None:
    """After ``warm_up(seal=True)`` (the service's), another decoder depth or a batch larger than any warmed runs
    the plain module: a compile there held every request queued behind it for half a minute."""
    model = _tiny().eval()
    randomize_for_parity(model)  # every weight drawn: each decoder layer moves the boxes
    x, sizes = torch.rand(4, 3, 64, 64), torch.tensor([[64, 64]] * 4)
    det = TorchDetector(model, "cpu", precision="fp32", fuse=True, compile="default")
    eager = TorchDetector(model, "cpu", precision="fp32", fuse=True)
    with torch.inference_mode():
        det.warm_up([1, 2], (64, 64), seal=True)
        det.infer(x[:1], sizes[:1])  # compiled
        det.set_decoder_depth(1)
        eager.set_decoder_depth(1)
        shallow, ref_shallow = det.infer(x[:2], sizes[:2]), eager.infer(x[:2], sizes[:2])
        det.set_decoder_depth(2)
        eager.set_decoder_depth(2)
        large, ref_large = det.infer(x, sizes), eager.infer(x, sizes)
        det.infer(x[:2], sizes[:2])  # back at the depth warmed: compiled again
    assert [c.shape[0] for c in compile_calls] == [1, 2, 1, 2]
    for out, ref in ((shallow, ref_shallow), (large, ref_large)):
        torch.testing.assert_close(out["pred_logits"], ref["pred_logits"], rtol=0, atol=1e-5)
        torch.testing.assert_close(out["pred_boxes"], ref["pred_boxes"], rtol=0, atol=1e-5)
    assert not torch.allclose(shallow["pred_boxes"], large["pred_boxes"][:2])  # the depth was applied


@pytest.mark.slow
def test_compiled_inference_matches_eager_on_the_cpu() -> None:
    """``compile=`` runs torch.compile (inductor; about a minute to compile on 2 CPU cores) and changes nothing;
    a smaller batch after it runs padded through the same graph, compiling nothing more."""
    from torch._dynamo.utils import counters

    model = _tiny().eval()
    randomize_batchnorm(model)
    x, sizes = torch.rand(2, 3, 64, 64), torch.tensor([[64, 64]] * 2)
    with torch.inference_mode():
        eager = TorchDetector(model, "cpu", precision="fp32", fuse=True)
        det = TorchDetector(model, "cpu", precision="fp32", fuse=True, compile="default")
        det.detect(x, sizes)
        graphs = counters["stats"]["unique_graphs"]
        ref, out = eager.detect(x[1:], sizes[1:]), det.detect(x[1:], sizes[1:])
    assert det.runner() is not det.module()  # the compiled wrapper ran
    assert counters["stats"]["unique_graphs"] == graphs > 0
    assert len(out) == 1 and (out[0]["scores"] - ref[0]["scores"]).abs().max() < 1e-5
    assert (out[0]["boxes"] - ref[0]["boxes"]).abs().max() < 1e-3
    if not real_cpu_info().native_bf16:
        # emulated bf16 (an AVX2 CPU) rounds where inductor's and eager's kernels each choose, not alike: 3 of 10
        # queries moved on a Zen 3; precision="auto" never runs bf16 there, and a CPU with AVX512_BF16/AMX checks it
        return
    with torch.inference_mode():  # bf16, weights frozen in the autocast dtype: within bf16's rounding of eager's
        ref16 = TorchDetector(model, "cpu", precision="bf16", fuse=True).infer(x, sizes)
        out16 = TorchDetector(model, "cpu", precision="bf16", fuse=True, compile="default").infer(x, sizes)
    # as query sets: bf16 rounding may select other queries among near-ties, in another order
    near = torch.cdist(out16["pred_boxes"][0], ref16["pred_boxes"][0]).min(dim=1).values
    assert (near < 0.03).float().mean() >= 0.9, near


# --------------------------------------------------------------------------------------------------- CUDA only
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", ["rtdetr_r18vd", "rtdetrv2_r18vd"])
def test_cuda_forward_equals_cpu(name: str) -> None:
    """Every weight redrawn (large sampling offsets, boxes crossing the borders), an input whose top-k cut has no
    near-tie, TF32 off; outputs compared as query sets (rounding may swap tied queries, not change them)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, eval_spatial_size=(128, 128)).eval()
    randomize_for_parity(model)
    x = untied_input(model, (2, 3, 128, 128), gap=1e-3, tries=50)
    with torch.no_grad():
        ref = model(x)
        out = copy.deepcopy(model).cuda()(x.cuda())
    out = {k: out[k].cpu() for k in ("pred_logits", "pred_boxes")}
    scale = max(1.0, float(ref["pred_logits"].abs().max()))
    assert max_query_set_diff(ref, out) / scale < 1e-4


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16+scaler", "bf16"])
def test_cuda_amp_step_matches_fp32(dtype: torch.dtype) -> None:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    ref = _train_step(_tiny(), "cuda", None)
    amp = _train_step(_tiny(), "cuda", dtype)
    assert ref["ema_device"] == amp["ema_device"] == ref["loss_device"] == "cuda"
    _close_to_fp32(amp, ref)
    cpu = _train_step(_tiny(), "cpu", None)
    assert ref["loss"] == pytest.approx(cpu["loss"], rel=1e-3)  # same step (same denoising groups) on both devices
    if dtype == torch.float16:  # at the default 2^16 the scaler finds inf gradients, skips the step, halves
        skipped = _train_step(_tiny(), "cuda", dtype, init_scale=2.0**16)
        assert skipped["grad_norm"] == float("inf") and skipped["scale"] == 2.0**15


@pytest.mark.cuda
@needs_cuda
def test_postprocess_and_fast_paths_on_cuda() -> None:
    model = _tiny().eval()
    randomize_batchnorm(model)
    x = torch.rand(2, 3, 64, 64)
    sizes = torch.tensor([[64, 64], [64, 64]])
    ref = TorchDetector(copy.deepcopy(model), "cpu", precision="fp32", fuse=True).detect(x, sizes)
    for kwargs in ({"precision": "fp32"}, {"precision": "fp32", "cuda_graph": True}, {"precision": "fp16"}):
        det = TorchDetector(copy.deepcopy(model), "cuda", fuse=True, **kwargs)  # type: ignore[arg-type]
        for _ in range(2):  # the second call replays the captured graph
            out = det.detect(x.cuda(), sizes.cuda())
        assert out[0]["boxes"].device.type == "cuda"
        tol = 1e-3 if kwargs["precision"] == "fp32" else 5e-2
        assert (out[0]["scores"][:5].cpu() - ref[0]["scores"][:5]).abs().max() < tol, kwargs
    dets = PostProcessor(3, num_top_queries=5)(model.cuda()(x.cuda()), sizes.cuda())
    assert dets[0]["labels"].device.type == "cuda"


@pytest.mark.cuda
@needs_cuda
def test_predictor_resizes_on_the_gpu() -> None:
    """A model on CUDA gets its images resized there (float antialiased bilinear): PIL's pixels within a level."""
    import numpy as np
    from PIL import Image

    from rtdetr.engine.predictor import Predictor

    model = _tiny().eval()
    gpu = Predictor(copy.deepcopy(model), ["a", "b", "c"], (64, 64), device="cuda")
    pil = Predictor(copy.deepcopy(model), ["a", "b", "c"], (64, 64), device="cuda", resize="pil")
    assert gpu.resize_device == torch.device("cuda") and pil.resize_device is None
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((300 - 90 * i, 200, 3)) * 255).astype(np.uint8)) for i in range(3)]
    x, _ = gpu.preprocess(images)
    ref, _ = pil.preprocess(images)
    assert x.device.type == "cuda" and (x.cpu() - ref).abs().max() <= 1.0 / 255 + 1e-6


@pytest.mark.cuda
@needs_cuda
def test_cli_runs_on_cuda(tmp_path: Path, tiny_data: dict, capsys: pytest.CaptureFixture) -> None:
    from rtdetr.cli import main
    from rtdetr.convert import save_model

    ckpt = save_model(_tiny(num_classes=4), tmp_path / "tiny.pth")  # the synthetic data has 4 classes
    image = next((Path(tiny_data["train"]).parent.parent / "train").glob("*.jpg"))
    assert main(["predict", str(ckpt), str(image), "--device", "cuda", "--no-save"]) == 0
    assert main(["val", str(ckpt), "--data", str(tiny_data["val"]), "--device", "cuda", "-o", str(tmp_path / "v")]) == 0
    out = tmp_path / "b.json"
    assert main(["benchmark", str(ckpt), "--device", "cuda", "--batch", "1", "4", "--runs", "2", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["results"][1]["images_per_s"] > 0
    assert "pytorch on cuda" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.slow
@needs_cuda
def test_short_training_on_cuda(tmp_path: Path, tiny_data: dict) -> None:
    from rtdetr.engine.trainer import Trainer

    cfg = tiny_config(tiny_data, tmp_path, "train.epochs=2", "train.device=cuda", "train.amp=true")
    result = Trainer(cfg).fit()
    assert result["epochs_run"] == 2 and result["last_eval"] is not None


@pytest.mark.cuda
@needs_cuda
def test_serve_on_cuda(tmp_path: Path) -> None:
    """The service with a CUDA model answers like the CPU one (same detections within fp16 rounding)."""
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from rtdetr.api import RTDETR
    from rtdetr.convert import save_model
    from rtdetr.serve import ServeConfig, create_app

    model = _tiny().eval()
    randomize_batchnorm(model)
    ckpt = save_model(model, tmp_path / "tiny.pth")
    buf = io.BytesIO()
    Image.new("RGB", (96, 80), (90, 160, 40)).save(buf, format="PNG")
    answers = {}
    for device in ("cpu", "cuda"):
        det = RTDETR(ckpt, device=device, class_names=["a", "b", "c"])
        with TestClient(create_app(det, ServeConfig())) as client:
            info = client.get("/info").json()
            assert info["model"]["device"].startswith(device)
            res = client.post("/predict?conf=0&max_det=5", files={"image": ("x.png", buf.getvalue(), "image/png")})
            assert res.status_code == 200
            answers[device] = [d["score"] for d in res.json()["detections"]]
    assert answers["cuda"] == pytest.approx(answers["cpu"], abs=5e-2)


@pytest.mark.cuda
@pytest.mark.slow
@needs_cuda
def test_demo_on_cuda_reaches_the_cpu_band(tmp_path: Path) -> None:
    """The embedded demo trained on the GPU lands where the CPU run does. The 10-epoch schedule, AP: on the CPU
    seed 0 0.675, seed 1 0.639; on an H200 (2026-12-04) seeds 0/1/2 0.633 / 0.467 / 0.669 (the loss leaves its
    first plateau an epoch or two later on some seeds, on either device). CUDA kernels are not deterministic, so
    seed 0 may follow another trajectory: the bound is the band's floor with a margin."""
    from rtdetr.demo import main

    assert main(["--out", str(tmp_path), "--epochs", "10", "train.device=cuda", "train.progress=false"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_AP"] >= 0.4
