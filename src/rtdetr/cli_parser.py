"""The ``rtdetr`` command line's arguments: every command, option and help text (the handlers are in
:mod:`rtdetr.cli`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from rtdetr import cli_args as arg
from rtdetr.options import InferenceOptions, ServeConfig, add_arguments, parse_size

__all__ = ["Handler", "build_parser"]

#: a command's implementation: parsed arguments in, exit code out
Handler = Callable[[argparse.Namespace], int]


def build_parser(handlers: Mapping[str, Handler]) -> argparse.ArgumentParser:
    """The ``rtdetr`` argument parser; each command's ``func`` is ``handlers[<command>]``."""
    parser = argparse.ArgumentParser(prog="rtdetr", description="RT-DETR real-time object detection.")
    from rtdetr import __version__

    parser.add_argument("--version", action="version", version=f"rtdetr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser(
        "info", help="list model variants with parameters and GFLOPs, or describe a model file or a recipe"
    )
    info.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="pattern over variant names (default: all), a model file or folder, or a recipe (fast_small, my.yaml)",
    )
    info.add_argument("--measure", action="store_true", help="build each model and count params/GFLOPs here")
    info.add_argument(
        "--size", type=parse_size, default=(640, 640), help="input size for --measure: a side or WIDTHxHEIGHT (640)"
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=handlers["info"])

    conv = sub.add_parser("convert", help="convert an official .pth or HF safetensors checkpoint to ours")
    conv.add_argument("source", help="official .pth/.pt, HF model.safetensors (config.json beside it), or ours")
    conv.add_argument("output", help="output .pth (weights + model config)")
    conv.add_argument("--variant", help="pin the variant name instead of inferring it (e.g. rtdetrv2_r18vd_dsp)")
    conv.add_argument(
        "--num-classes", type=arg.positive_int, help="re-head for another class count (implies --non-strict)"
    )
    conv.add_argument("--non-strict", action="store_true", help="load what fits, leave the rest randomly initialised")
    conv.add_argument("--trust", action="store_true", help="allow unpickling arbitrary objects (trusted files only)")
    conv.set_defaults(func=handlers["convert"])

    train = sub.add_parser(
        "train",
        help="train a model (recipe YAML and/or key=value overrides)",
        description="Train RT-DETR. Settings come from an optional recipe YAML, then the "
        "options below, then dotted overrides such as train.lr=2e-4 model.decoder.num_layers=4.",
    )
    train.add_argument("overrides", nargs="*", help="dotted key=value overrides (model.*, data.*, train.*)")
    train.add_argument("--recipe", "-c", help="recipe YAML, or a shipped one's name: fast_small, ... (rtdetr info)")
    train.add_argument("--data", help="training set: COCO json, YOLO data.yaml/images folder, or VOC folder")
    train.add_argument("--val", help="validation set (same forms)")
    train.add_argument(
        "--model",
        help="variant name, e.g. rtdetr_r18vd (see 'rtdetr info'); default: the recipe's, else the --init-from"
        " checkpoint's, else rtdetr_r18vd",
    )
    train.add_argument(
        "--epochs", type=arg.positive_int, help="epochs of the schedule (default: the recipe's; 72 without one)"
    )
    train.add_argument(
        "--minutes", type=arg.minutes, help="training time budget (train.time_budget_s: time in training steps; "
        "evaluations and start-up come on top; the fast_small defaults of a small dataset spread their LR schedule "
        "over it)",
    )  # fmt: skip
    train.add_argument("--batch", type=arg.positive_int, help="global batch size")
    train.add_argument("-o", "--output", help="run folder (default runs/train; a fresh runs/train2... if used)")
    train.add_argument(
        "--size", type=parse_size, help="input size: a side or WIDTHxHEIGHT (640x384) (data.image_size; default 640)"
    )
    train.add_argument("--device", help="cpu, cuda, cuda:1 or auto")
    train.add_argument("--threads", type=arg.positive_int, help="CPU threads")
    train.add_argument("--init-from", help="start from this checkpoint (official, HF or ours); new class count OK")
    train.add_argument("--resume", help="continue a run exactly from its last.pth (or its run folder)")
    train.set_defaults(func=handlers["train"])

    val = sub.add_parser("val", help="COCO metrics, per-class AP, P/R/F1, PR curves and confusion matrix")
    val.add_argument("model", help="checkpoint (ours, official .pth, HF safetensors) or variant name")
    val.add_argument(
        "--data",
        help="COCO json, YOLO data.yaml/images folder, or VOC folder (default: the validation set of the run that "
        "wrote the checkpoint)",
    )
    val.add_argument("--split", default="val", help="split of a YOLO data.yaml or VOC folder (default val)")
    val.add_argument(
        "--format", default="auto", choices=["auto", "coco", "yolo", "voc"], help="dataset format (default: detected)"
    )
    val.add_argument("--batch", type=arg.positive_int, default=8, help="images per forward pass (default 8)")
    val.add_argument("--size", type=parse_size, help="input size: a side (640) or WIDTHxHEIGHT (default: the model's)")
    val.add_argument(
        "--conf", type=arg.fraction, default=0.5, help="score threshold for P/R/F1 and the confusion matrix"
    )
    val.add_argument(
        "-o", "--output", "--save-dir", dest="output",
        help="folder for metrics.json, predictions.json, per_class.csv, PR curve and confusion matrix"
        f" (default {arg.DEFAULT_VAL_DIR}, or {arg.DEFAULT_VAL_DIR}2, 3... when it holds files)",
    )  # fmt: skip
    val.add_argument("--json", action="store_true", help="print the metrics as JSON")
    arg.add_speed_options(val)
    val.set_defaults(func=handlers["val"])

    pred = sub.add_parser("predict", help="detect objects in images, folders, globs, videos or a camera")
    pred.add_argument("model", help="checkpoint (ours, official .pth, HF safetensors) or variant name")
    pred.add_argument(
        "source", nargs="+", help="images (files, URLs), folders, globs, .txt lists, videos, a camera index, a stream"
    )
    add_arguments(pred, InferenceOptions, ("conf", "max_det", "classes", "image_size", "batch"))
    arg.add_predict_outputs(pred)
    arg.add_speed_options(pred)
    pred.set_defaults(func=handlers["predict"])

    exp = sub.add_parser("export", help="export model + post-processor to ONNX (parity-checked against PyTorch)")
    exp.add_argument("model", help="checkpoint (ours, official .pth, HF safetensors) or variant name")
    exp.add_argument("--format", default="onnx", choices=["onnx", "openvino"], help="graph format (default onnx)")
    exp.add_argument(
        "--int8", action="store_true", help="also write an int8 (QDQ) ONNX graph; with --format openvino an int8 IR too"
    )
    exp.add_argument("--calib", help="calibration images for --int8: an image folder or a dataset path")
    exp.add_argument("--output", "-o", help="output file (default: the checkpoint's path with .onnx)")
    exp.add_argument(
        "--size", type=parse_size, help="input size fixed in the graph: a side (640) or WIDTHxHEIGHT (640x384)"
    )
    exp.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 16 (default 17)")
    exp.add_argument(
        "--max-det", type=arg.positive_int, default=InferenceOptions.max_det, help="detections per image in the graph"
    )
    exp.add_argument("--decoder-depth", type=arg.positive_int, help="bake a truncated decoder into the graph")
    exp.add_argument("--simplify", action="store_true", help="run onnxslim/onnxsim if installed")
    exp.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity check")
    exp.add_argument(
        "--no-class-mask",
        action="store_true",
        help="leave out the optional class_mask input: exactly the official two inputs (images, orig_target_sizes), "
        "for tools written for the official export's exact inputs; a class filter then keeps those classes "
        "among the graph's --max-det detections",
    )
    exp.set_defaults(func=handlers["export"])

    bench = sub.add_parser("benchmark", help="latency split into preprocess / model / post-process")
    bench.add_argument("model", help="checkpoint, variant name or exported .onnx")
    bench.add_argument("--batch", type=arg.positive_int, nargs="+", default=[1], help="batch sizes to sweep")
    bench.add_argument("--runs", type=arg.positive_int, default=10, help="timed runs per batch size (default 10)")
    bench.add_argument("--warmup", type=arg.count0, default=3, help="untimed runs first (default 3)")
    bench.add_argument("--image", help="image to time with (default: a generated 1280x720 image)")
    _add_run_size(bench)
    bench.add_argument("-o", "--output", help="write the results as JSON to this file")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--yolo", help="also time an Ultralytics YOLO .pt/.yaml with its NMS (needs ultralytics)")
    bench.add_argument(
        "--yolo-conf", type=arg.fraction, nargs="+", default=[0.001, 0.25], help="YOLO score thresholds to time"
    )
    bench.add_argument(
        "--all-paths",
        action="store_true",
        help="time every CPU path here (PyTorch fp32/bf16, ONNX Runtime and OpenVINO fp32/int8) and print a table",
    )
    bench.add_argument("--calib", help="calibration images for the int8 paths of --all-paths (default: generated)")
    arg.add_speed_options(bench)
    bench.set_defaults(func=handlers["benchmark"])

    srv = sub.add_parser("serve", help="HTTP service with a web page: POST an image, get JSON detections")
    srv.add_argument("model", help="checkpoint, variant name (random weights), exported .onnx or OpenVINO .xml")
    srv.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to listen on every interface)")
    srv.add_argument("--port", type=arg.port, default=8000, help="TCP port, 1..65535 (default 8000)")
    add_arguments(srv, ServeConfig)
    srv.add_argument("--no-fuse", action="store_true", help="do not fold Conv+BN/RepVGG before serving")
    _add_run_size(srv)
    arg.add_speed_options(srv)
    srv.set_defaults(func=handlers["serve"])

    # its own options (rtdetr demo --help) are the demo's parser's: rtdetr.cli.main hands it the rest of the line
    demo = sub.add_parser(
        "demo", add_help=False, help="train, evaluate and predict on generated data within minutes (make demo)"
    )
    demo.set_defaults(func=handlers["demo"])

    check = sub.add_parser("check-data", help="summarise a dataset and list its problems")
    check.add_argument("path", help="COCO json, YOLO data.yaml/images folder, or VOC folder")
    check.add_argument("--split", default="train", help="split of a YOLO data.yaml or VOC folder (default train)")
    check.add_argument(
        "--format", default="auto", choices=["auto", "coco", "yolo", "voc"], help="dataset format (default: detected)"
    )
    check.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    check.add_argument("--strict", action="store_true", help="exit 1 when any problem is found")
    check.set_defaults(func=handlers["check-data"])
    return parser


def _add_run_size(p: argparse.ArgumentParser) -> None:
    """``--size`` of a command that runs a model as it was trained unless told otherwise (benchmark, serve)."""
    p.add_argument(
        "--size", type=parse_size, help="input size: a side (640) or WIDTHxHEIGHT (default: the model's; an exported "
        "graph runs at its own only)",
    )  # fmt: skip
