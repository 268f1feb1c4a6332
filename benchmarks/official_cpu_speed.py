"""CPU speed against the official RT-DETRv2 code, both in one process on the same weights: inference paths,
where the time goes (backbone / encoder / decoder), and the training step.

The official code needs torchvision, which the project's CPU torch lacks: run this in a separate environment
(the registry's torch + torchvision run on the CPU)::

    python -m venv /tmp/peer && /tmp/peer/bin/pip install torch==2.14.1 torchvision==0.29.1 scipy pyyaml \\
        pillow onnx onnxruntime openvino faster-coco-eval tensorboard
    PYTHONPATH=src /tmp/peer/bin/python benchmarks/official_cpu_speed.py --threads 2 \\
        --out benchmarks/results_official_cpu_speed_avx2.json

Timed, median of --runs after --warmup at batch 1 (inference, post-processing included: the official
``RTDETRPostProcessor`` and ours) and of --train-runs at batch --train-batch (forward + criterion + backward +
AdamW step, fp32, denoising on, the same targets):

* official: eager (eval mode), ``deploy()`` (RepVGG merged, as its export does), its model + post-processor
  exported to ONNX (opset 17) on ONNX Runtime; the training step;
* ours: eager, the default predict path (fused + channels_last, fp32), ONNX Runtime fp32 and int8, OpenVINO fp32
  and int8 (where installed); the training step, plain and channels_last.

Where the CPU has native bf16 (AVX512_BF16 or AMX; ``--bf16 auto``, the default), both sides are also timed under
bf16 autocast: official eager and ours fused + channels_last (what ``precision="auto"`` picks there), and the
training step with the forward pass in bf16 and the criterion in fp32 (as ``train.amp=true`` does).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from official_parity import VARIANTS, official_code  # noqa: E402
from rtdetr.bench.profile import measure_latency  # noqa: E402
from rtdetr.convert import load_model  # noqa: E402
from rtdetr.engine.backend import TorchDetector  # noqa: E402
from rtdetr.engine.hardware import cpu_info  # noqa: E402
from rtdetr.loss import RTDETRCriterion  # noqa: E402
from rtdetr.loss.criterion import to_float32  # noqa: E402
from rtdetr.models.postprocess import PostProcessor  # noqa: E402

_BOXES = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4], [0.7, 0.2, 0.1, 0.1]])
TARGETS = [
    {"labels": torch.tensor([1, 5, 9]), "boxes": _BOXES},
    {"labels": torch.tensor([3]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.3]])},
]


class _Exportable(torch.nn.Module):
    """The official model followed by its post-processor, as one graph (what its export script exports)."""

    def __init__(self, model: torch.nn.Module, post: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.post = model, post

    def forward(self, images: torch.Tensor, sizes: torch.Tensor):  # noqa: ANN201
        return self.post(self.model(images), sizes)


def _ort(path: Path, threads: int):  # noqa: ANN202
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _stages(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Median ms of the backbone, the encoder and the decoder (with its query selection) of an eval model."""
    feats = model.backbone(x)
    enc = model.encoder(feats)
    parts = {
        "backbone": lambda: model.backbone(x),
        "encoder": lambda: model.encoder(feats),
        "decoder": lambda: model.decoder(enc),
    }
    return {k: round(measure_latency(f, 1, 5).median_ms, 1) for k, f in parts.items()}


def _train_step(  # noqa: ANN202
    model: torch.nn.Module,
    criterion,  # noqa: ANN001
    x: torch.Tensor,
    targets: list[dict],
    bf16: bool = False,
):
    """One optimizer step; with ``bf16`` the forward pass runs under bf16 autocast, the criterion in fp32."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, targets)
        losses = criterion(to_float32(out), targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, default=Path("../shared/peers/rtdetr_official"))
    ap.add_argument("--variant", default="rtdetrv2_r18vd", choices=sorted(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--train-runs", type=int, default=6)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="also time bf16 autocast paths (auto: where the CPU has native bf16)")  # fmt: skip
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and cpu_info().native_bf16)
    folder, config = VARIANTS[args.variant]
    tmp = Path(tempfile.mkdtemp())
    ms: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = {}

    def t(name: str, fn, runs: int = args.runs, warmup: int = args.warmup) -> None:  # noqa: ANN001
        ms[name] = round(measure_latency(fn, warmup, runs).median_ms, 1)
        print(f"{name:<44}{ms[name]:>9.1f} ms", flush=True)

    x = torch.rand(1, 3, args.size, args.size)
    sizes = torch.tensor([[args.size, args.size]])
    with official_code(args.official.resolve() / folder) as off:
        cfg = off.YAMLConfig(config, **{"PResNet" if "hgnet" not in args.variant else "HGNetv2": {"pretrained": False}})
        official, post, criterion = cfg.model, cfg.postprocessor, cfg.criterion
        path = tmp / "official.pth"
        torch.save({"ema": {"module": official.state_dict(), "updates": 1}, "last_epoch": 71}, path)
        ours = load_model(path).eval()
        official.eval()
        deployed = copy.deepcopy(official).deploy()  # outside inference mode: exported below
        dpost = copy.deepcopy(post).deploy()
        with torch.inference_mode():
            t("official eager fp32", lambda: post(official(x), sizes))
            t("official deploy() fp32", lambda: dpost(deployed(x), sizes))
            stages["official deploy()"] = _stages(deployed, x)
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    t("official eager bf16 autocast", lambda: post(official(x), sizes))
                    t("official deploy() bf16 autocast", lambda: dpost(deployed(x), sizes))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Exportable(deployed, dpost), (x, sizes), str(tmp / "official.onnx"), opset_version=17,
                input_names=["images", "orig_target_sizes"], output_names=["labels", "boxes", "scores"], dynamo=False,
            )  # fmt: skip
        sess = _ort(tmp / "official.onnx", args.threads)
        feed = {"images": x.numpy(), "orig_target_sizes": sizes.numpy()}
        t("official ONNX Runtime fp32", lambda: sess.run(None, feed))

        ours_post = PostProcessor(ours.config.num_classes)  # type: ignore[union-attr]
        with torch.inference_mode():
            t("ours eager fp32", lambda: ours_post(ours(x), sizes))
        det = TorchDetector(ours, precision="fp32", channels_last=True, fuse=True)
        with torch.inference_mode():
            t("ours fused fp32 + channels_last", lambda: det.detect(x, sizes))
            stages["ours fused + channels_last"] = _stages(
                det.module(), x.contiguous(memory_format=torch.channels_last)
            )
            if bf16:
                det16 = TorchDetector(ours, precision="bf16", channels_last=True, fuse=True)
                t("ours fused bf16 + channels_last", lambda: det16.detect(x, sizes))
        from rtdetr.export import OnnxRuntimeDetector, export_onnx, quantize_onnx_int8

        export_onnx(ours, tmp / "ours.onnx", (args.size, args.size), check=False)
        ort = OnnxRuntimeDetector(tmp / "ours.onnx", threads=args.threads)
        t("ours ONNX Runtime fp32", lambda: ort.run(x.numpy(), sizes.numpy()))
        from rtdetr.bench.paths import _generated_calibration

        calib = sorted(_generated_calibration(tmp / "calib").glob("*.jpg"))
        quantize_onnx_int8(tmp / "ours.onnx", tmp / "ours_int8.onnx", calib, (args.size, args.size))
        ort8 = OnnxRuntimeDetector(tmp / "ours_int8.onnx", threads=args.threads)
        t("ours ONNX Runtime int8", lambda: ort8.run(x.numpy(), sizes.numpy()))
        try:
            from rtdetr.export import OpenVinoDetector, to_openvino

            ov = OpenVinoDetector(to_openvino(tmp / "ours.onnx", tmp / "ov"), threads=args.threads)
            t(f"ours OpenVINO {ov.precision}", lambda: ov.run(x.numpy(), sizes.numpy()))  # bf16 where native
            ov8 = OpenVinoDetector(to_openvino(tmp / "ours_int8.onnx", tmp / "ov8"), threads=args.threads)
            t("ours OpenVINO int8", lambda: ov8.run(x.numpy(), sizes.numpy()))
        except ImportError as e:
            print(f"OpenVINO skipped: {e}")

        if not args.skip_train:
            xb = torch.rand(args.train_batch, 3, args.size, args.size)
            targets = (TARGETS * args.train_batch)[: args.train_batch]
            official.train()
            if hasattr(official, "multi_scale"):
                official.multi_scale = None
            t("train step official fp32", _train_step(official, criterion, xb, targets), args.train_runs, 2)
            mine = load_model(path).train()
            t("train step ours fp32", _train_step(mine, RTDETRCriterion(mine.config.num_classes), xb, targets),
              args.train_runs, 2)  # fmt: skip
            cl = load_model(path).train().to(memory_format=torch.channels_last)
            xcl = xb.contiguous(memory_format=torch.channels_last)
            t("train step ours fp32 + channels_last", _train_step(cl, RTDETRCriterion(80), xcl, targets),
              args.train_runs, 2)  # fmt: skip
            if bf16:
                t("train step official bf16 autocast", _train_step(official, criterion, xb, targets, True),
                  args.train_runs, 2)  # fmt: skip
                t("train step ours bf16 autocast + channels_last",
                  _train_step(cl, RTDETRCriterion(80), xcl, targets, True), args.train_runs, 2)  # fmt: skip

    infer = {k: v for k, v in ms.items() if k.startswith("ours") and "train" not in k}
    best = min(infer, key=infer.__getitem__)
    peer = {k: v for k, v in ms.items() if k.startswith("official") and "train" not in k}
    peer_best = min(peer, key=peer.__getitem__)
    ratios = {
        "ours_eager_vs_official_eager": round(ms["ours eager fp32"] / ms["official eager fp32"], 3),
        "ours_default_vs_official_eager": round(ms["ours fused fp32 + channels_last"] / ms["official eager fp32"], 3),
        "best_path": best,
        "best_path_vs_official_onnxruntime": round(ms[best] / ms["official ONNX Runtime fp32"], 3),
        "official_best_path": peer_best,
        "best_path_vs_official_best_path": round(ms[best] / ms[peer_best], 3),
    }
    if "train step ours fp32" in ms:
        ratios["train_step_vs_official"] = round(ms["train step ours fp32"] / ms["train step official fp32"], 3)
        ratios["train_step_channels_last_vs_official"] = round(
            ms["train step ours fp32 + channels_last"] / ms["train step official fp32"], 3
        )
        if bf16:
            ratios["train_step_bf16_vs_official_bf16"] = round(
                ms["train step ours bf16 autocast + channels_last"] / ms["train step official bf16 autocast"], 3
            )
            ratios["train_step_bf16_vs_official_fp32"] = round(
                ms["train step ours bf16 autocast + channels_last"] / ms["train step official fp32"], 3
            )
    res = {
        "variant": args.variant,
        "input": f"{args.size}x{args.size}, inference batch 1, training batch {args.train_batch}",
        "threads": args.threads,
        "runs": args.runs,
        "cpu": cpu_info().as_dict(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "median_ms": ms,
        "stages_ms": stages,
        "ratios": ratios,
    }
    print(json.dumps({"ratios": ratios, "stages_ms": stages}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
