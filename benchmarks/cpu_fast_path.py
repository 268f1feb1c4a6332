"""CPU paths for rtdetr_r18vd at 640x640, batch 1, against a peer in the same run.

Peer: HF transformers' RTDetrForObjectDetection r18vd (random weights, local config). The peer baseline
(../shared/reference/peer_cpu_baseline.md) measured it within noise of the official code: eager 394-462 ms against
431-480 ms, ONNX Runtime 309-340 ms against 317-342 ms. The official code itself cannot be fetched here.

Timed (median of --runs after --warmup, torch and ONNX Runtime limited to --threads):
  ours: eager fp32, deploy()-fused fp32, fused fp32 + channels_last (the default predict path on the CPU),
        fused + bf16 autocast + channels_last, ONNX Runtime fp32 and int8,
        OpenVINO (its default precision on this CPU) and OpenVINO running the calibrated int8 graph;
  peer: HF eager fp32 and HF on ONNX Runtime (TorchScript export, opset 17);
  training step (batch 2, forward + loss + backward + AdamW step): ours (fp32; channels_last; bf16 autocast +
  channels_last, i.e. train.amp + train.channels_last) vs HF fp32.

    python benchmarks/cpu_fast_path.py --runs 10 --json benchmarks/results_cpu_fast_path.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from rtdetr.bench.profile import measure_latency
from rtdetr.engine.hardware import cpu_info
from rtdetr.export import OnnxRuntimeDetector, OpenVinoDetector, export_onnx, quantize_onnx_int8, to_openvino
from rtdetr.loss import RTDETRCriterion
from rtdetr.loss.criterion import to_float32
from rtdetr.models import create_model


def _hf_r18():  # noqa: ANN202
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig

    bb = RTDetrResNetConfig(
        hidden_sizes=[64, 128, 256, 512],
        depths=[2, 2, 2, 2],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    cfg = RTDetrConfig(
        backbone_config=bb,
        encoder_in_channels=[128, 256, 512],
        hidden_expansion=0.5,
        decoder_layers=3,
        use_pretrained_backbone=False,
        num_labels=80,
    )
    return RTDetrForObjectDetection(cfg)


def _targets(device: str = "cpu") -> list[dict]:
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4], [0.7, 0.2, 0.1, 0.1]])
    return [{"labels": torch.tensor([1, 5, 9]), "boxes": boxes}, {"labels": torch.tensor([3]), "boxes": boxes[:1]}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--calib", help="folder of calibration images for int8 (default: generated images)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 640, 640)
    sizes = np.array([[640, 640]], dtype=np.int64)
    res: dict[str, float] = {}

    def t(name: str, fn) -> None:  # noqa: ANN001
        res[name] = round(measure_latency(fn, args.warmup, args.runs).median_ms, 1)
        print(f"{name:<34}{res[name]:>9.1f} ms", flush=True)

    ours = create_model("rtdetr_r18vd").eval()
    with torch.inference_mode():
        t("ours eager fp32", lambda: ours(x))
        fused = copy.deepcopy(ours).deploy()
        t("ours fused fp32", lambda: fused(x))
        eager_cl = copy.deepcopy(ours).to(memory_format=torch.channels_last)
        t("ours eager fp32 + channels_last", lambda: eager_cl(x.contiguous(memory_format=torch.channels_last)))
        fast = copy.deepcopy(fused).to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        t("ours fused fp32 + channels_last", lambda: fast(xc))  # predict on a CPU without native bf16

        def bf16() -> object:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fast(xc)

        t("ours fused bf16 + channels_last", bf16)
    tmp = Path(tempfile.mkdtemp())
    export_onnx(ours, tmp / "ours.onnx", (640, 640), check=False)
    ort = OnnxRuntimeDetector(tmp / "ours.onnx", threads=args.threads)
    t("ours ONNX Runtime fp32 (+post)", lambda: ort.run(x.numpy(), sizes))
    if args.calib:
        calib = sorted(Path(args.calib).glob("*.jpg"))[:32]
    else:
        from PIL import Image

        rng = np.random.default_rng(0)
        calib = [Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8)) for _ in range(16)]
    quantize_onnx_int8(tmp / "ours.onnx", tmp / "ours_int8.onnx", calib, (640, 640))
    ort8 = OnnxRuntimeDetector(tmp / "ours_int8.onnx", threads=args.threads)
    t("ours ONNX Runtime int8 (+post)", lambda: ort8.run(x.numpy(), sizes))
    try:
        ov = OpenVinoDetector(to_openvino(tmp / "ours.onnx", tmp / "ov"), threads=args.threads)
        t("ours OpenVINO default (+post)", lambda: ov.run(x.numpy(), sizes))
        ov8 = OpenVinoDetector(to_openvino(tmp / "ours_int8.onnx", tmp / "ov8"), threads=args.threads)
        t("ours OpenVINO int8 (+post)", lambda: ov8.run(x.numpy(), sizes))
    except ImportError as e:
        print(f"OpenVINO skipped: {e}")

    try:
        hf = _hf_r18().eval()
    except ImportError:
        print("transformers not installed: peer skipped")
        hf = None
    if hf is not None:
        with torch.inference_mode():
            t("peer HF eager fp32", lambda: hf(pixel_values=x))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                hf,
                (x,),
                str(tmp / "hf.onnx"),
                input_names=["pixel_values"],
                output_names=["logits", "pred_boxes"],
                opset_version=17,
                dynamo=False,
            )
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
        sess = onnxruntime.InferenceSession(str(tmp / "hf.onnx"), opts, providers=["CPUExecutionProvider"])
        t("peer HF ONNX Runtime fp32", lambda: sess.run(None, {"pixel_values": x.numpy()}))

    # training step, batch 2
    xb = torch.rand(2, 3, 640, 640)
    model = create_model("rtdetr_r18vd").train()
    crit = RTDETRCriterion(80)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def ours_step() -> None:
        losses = crit(model(xb, _targets()), _targets())
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()

    t("train step ours (bs 2)", ours_step)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    xb_cl = xb.contiguous(memory_format=torch.channels_last)

    def ours_step_fast(amp: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(xb_cl, _targets())
        losses = crit(to_float32(out), _targets())  # criterion in fp32, as the trainer does
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()

    t("train step ours channels_last (bs 2)", lambda: ours_step_fast(False))
    t("train step ours bf16 AMP + channels_last (bs 2)", lambda: ours_step_fast(True))
    if hf is not None:
        hf.train()
        hopt = torch.optim.AdamW(hf.parameters(), lr=1e-5)
        labels = [{"class_labels": d["labels"], "boxes": d["boxes"]} for d in _targets()]

        def hf_step() -> None:
            out = hf(pixel_values=xb, labels=labels)
            hopt.zero_grad()
            out.loss.backward()
            hopt.step()

        t("train step peer HF (bs 2)", hf_step)

    best = min(res[k] for k in res if k.startswith("ours") and "eager" not in k)
    eager = min(res[k] for k in res if k.startswith("ours") and "fp32" in k and "ONNX" not in k)
    ratios = {}
    if "peer HF ONNX Runtime fp32" in res:
        ratios["best_cpu_path_vs_peer_onnxruntime"] = round(best / res["peer HF ONNX Runtime fp32"], 3)
        ratios["ours_eager_vs_peer_eager"] = round(res["ours eager fp32"] / res["peer HF eager fp32"], 3)
        ratios["ours_best_eager_fp32_vs_peer_eager"] = round(eager / res["peer HF eager fp32"], 3)
        peer_step = res["train step peer HF (bs 2)"]
        ratios["train_step_vs_peer"] = round(res["train step ours (bs 2)"] / peer_step, 3)
        ratios["train_step_channels_last_vs_peer"] = round(res["train step ours channels_last (bs 2)"] / peer_step, 3)
        ratios["train_step_bf16_amp_channels_last_vs_peer"] = round(
            res["train step ours bf16 AMP + channels_last (bs 2)"] / peer_step, 3
        )
    print(json.dumps(ratios, indent=2))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "cpu": cpu_info().as_dict(),
                    "threads": args.threads,
                    "runs": args.runs,
                    "torch": torch.__version__,
                    "median_ms": res,
                    "ratios": ratios,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
