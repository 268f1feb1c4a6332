"""Command line ``rtdetr <command> ...``: parse, call the library, print; errors exit non-zero in one line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtdetr import cli_args as arg
from rtdetr.cli_parser import Handler, build_parser
from rtdetr.engine.rundir import Terminated, fresh_folder, interrupted_note, sigterm_stops_like_ctrl_c, train_summary
from rtdetr.options import InferenceOptions, ServeConfig, from_args, resolve_classes, size_text

__all__ = ["main"]


def _cmd_info(args: argparse.Namespace) -> int:
    from rtdetr.bench.profile import count_gflops, count_parameters
    from rtdetr.models import create_model, get_variant, list_models
    from rtdetr.recipe import bundled_recipes

    if args.pattern in bundled_recipes() or args.pattern.endswith((".yaml", ".yml")):
        return _info_recipe(args.pattern, args.json)
    if Path(args.pattern).exists() or args.pattern.endswith((".pth", ".pt", ".safetensors", ".onnx", ".xml")):
        from rtdetr.convert.summary import describe_checkpoint, describe_export, format_summary

        describe = describe_export if args.pattern.endswith((".onnx", ".xml")) else describe_checkpoint
        summary = describe(args.pattern)
        print(arg.dumps(summary) if args.json else format_summary(summary))
        return 0
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no variant matches {args.pattern!r}; try 'rtdetr info' for the full list")
    rows = []
    for name in names:
        spec = get_variant(name)
        row: dict = {
            "name": name,
            "params_m": spec.params_m,
            "gflops_paper": spec.gflops,
            "coco_ap": spec.coco_ap,
            "decoder_layers": spec.config.decoder.num_layers,
        }
        if args.measure:
            model = create_model(name)
            row["params_m"] = round(count_parameters(model) / 1e6, 2)
            row["gflops"] = round(count_gflops(model, args.size), 1)
        rows.append(row)
    if args.json:
        print(arg.dumps(rows))
        return 0
    header = f"{'variant':<22}{'params(M)':>10}{'GFLOPs':>9}{'COCO AP':>9}{'dec layers':>11}"
    print(header)
    print("-" * len(header))
    for r in rows:
        gflops = r.get("gflops", r["gflops_paper"])
        ap = "-" if r["coco_ap"] is None else f"{r['coco_ap']:.1f}"
        print(f"{r['name']:<22}{r['params_m']:>10.2f}{gflops:>9.1f}{ap:>9}{r['decoder_layers']:>11}")
    note = (
        f"\nGFLOPs counted at {size_text(args.size)}"
        if args.measure
        else "\nGFLOPs at 640x640 from the published table; --measure counts them here."
    )
    print(f"{note}\nTraining recipes shipped (rtdetr train -c NAME): {', '.join(bundled_recipes())}")
    return 0


def _info_recipe(name: str, as_json: bool) -> int:
    """``rtdetr info fast_small`` / ``rtdetr info my.yaml``: where the recipe is and what it sets, once it has
    loaded as ``rtdetr train -c`` loads it (an unknown key or a bad value is the error train would give)."""
    import yaml

    from rtdetr.recipe import find_recipe, load_recipe

    path = find_recipe(name)
    load_recipe(path)
    text = path.read_text(encoding="utf-8")
    if as_json:
        print(arg.dumps({"recipe": str(path), "settings": yaml.safe_load(text) or {}}))
        return 0
    print(f"recipe {path} (valid; rtdetr train -c {name}; copy it to change it)\n")
    print(text.rstrip())
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from rtdetr.convert.checkpoint import convert_checkpoint

    overrides = {} if args.num_classes is None else {"num_classes": args.num_classes}
    out, cfg = convert_checkpoint(
        args.source, args.output, args.variant, not args.trust, not args.non_strict, **overrides
    )
    print(f"wrote {out} ({cfg.name}, {cfg.num_classes} classes)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from rtdetr.engine.trainer import Trainer
    from rtdetr.recipe import load_recipe

    updates: dict = {"data": {}, "model": {}, "train": {}}
    for section, key, value in (
        ("data", "train", args.data),
        ("data", "val", args.val),
        ("model", "name", args.model),
        ("train", "epochs", args.epochs),
        ("train", "batch_size", args.batch),
        ("train", "output_dir", args.output),
        ("data", "image_size", list(args.size) if args.size else None),
        ("train", "device", args.device),
        ("train", "time_budget_s", args.minutes * 60 if args.minutes is not None else None),
        (None, "init_from", args.init_from),
        (None, "resume", args.resume),
    ):
        if value is not None:
            (updates[section] if section else updates)[key] = value
    cfg = load_recipe(args.recipe, list(args.overrides), updates)
    trainer = Trainer(cfg)
    try:
        with sigterm_stops_like_ctrl_c():
            result = trainer.fit()
    except KeyboardInterrupt as e:  # said by main, after "interrupted" or "terminated (SIGTERM)"
        raise type(e)(interrupted_note(trainer.out_dir)) from None
    if trainer.main:  # under torchrun, process 0 alone (another's result has no evaluation: "no validation set")
        print(train_summary(result))
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from rtdetr.data.check import check_dataset

    report = check_dataset(args.path, args.split, args.format, decode=not args.no_decode)
    print(report.format())
    return 0 if report.usable and (report.ok or not args.strict) else 1


def _cmd_val(args: argparse.Namespace) -> int:
    det = _open(args)
    output = args.output or fresh_folder(arg.DEFAULT_VAL_DIR)
    res = det.val(
        args.data, split=args.split, batch=args.batch, decoder_depth=args.decoder_depth, conf=args.conf,
        image_size=args.size, output=output, format=args.format,
    )  # fmt: skip
    if args.json:
        print(arg.dumps({k: v for k, v in res.items() if k != "files"}))
        return 0
    print(res["ground_truth"])
    print("  ".join(f"{k} {v:.4f}" for k, v in res["stats"].items()))
    t = res["threshold"]
    print(f"at score >= {t['conf']}: precision {t['precision']:.4f}  recall {t['recall']:.4f}  F1 {t['f1']:.4f}")
    width = max(len(n) for n in res["per_class"])
    print(f"{'class':<{width}}  {'AP':>7}{'AP50':>8}{'P':>8}{'R':>8}{'F1':>8}")
    for name, m in res["per_class"].items():
        print(
            f"{name:<{width}}  {m['AP']:>7.4f}{m['AP50']:>8.4f}{m['precision']:>8.4f}{m['recall']:>8.4f}{m['f1']:>8.4f}"
        )
    for kind, path in res.get("files", {}).items():
        print(f"wrote {kind}: {path}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    classes, args.classes = args.classes, None  # ids or names: resolved against the model's class names
    opts = from_args(args, InferenceOptions)
    det = _open(args, say=False)
    opts = dataclasses.replace(opts, classes=resolve_classes(classes, det.class_names))
    det.predictor(**dataclasses.asdict(opts))  # options against this model first: a bad one is the only line
    _say_path(det)
    sources = [int(s) if s.isdigit() else s for s in args.source]  # several: a shell-expanded glob, say
    source = sources[0] if len(sources) == 1 else sources
    for flag in ("save_conf", "save_crop"):  # (--save-txt and --no-save: argparse refuses the pair)
        if args.no_save and getattr(args, flag):
            raise ValueError(f"--{flag.replace('_', '-')} writes files: it cannot go with --no-save")
    save_dir = None if args.no_save else (args.output or fresh_folder(arg.DEFAULT_PREDICT_DIR))
    n_images = n_dets = 0
    videos: dict[str | None, int] = {}
    saving = {"save_txt": args.save_txt or args.save_conf, "save_conf": args.save_conf, "save_crop": args.save_crop}
    results = det.predict(
        source, **dataclasses.asdict(opts), stream=True, output=save_dir, video_stride=args.video_stride, **saving
    )
    try:  # closing the generator finishes the videos it writes, also on Ctrl-C
        for r in results:
            if r.frame is None:
                n_images += 1
            else:
                videos[r.path] = videos.get(r.path, 0) + 1
            n_dets += len(r)
            if args.json:
                print(r.to_json())
            else:
                where = r.path or "image"
                if r.frame is not None:
                    where += f" frame {r.frame}"
                print(f"{where}: {found_text(r.class_names, r.scores.tolist())}")
    finally:
        results.close()
    if not args.json:
        read = [f"{n_images} image{'s' * (n_images != 1)}"] if n_images or not videos else []
        if videos:
            frames = sum(videos.values())
            read.append(f"{len(videos)} video{'s' * (len(videos) != 1)} ({frames} frame{'s' * (frames != 1)})")
        where = f"; drawn images and videos with their JSON in {save_dir}" if save_dir else ""
        where += f", YOLO labels in {Path(str(save_dir)) / 'labels'}" if saving["save_txt"] else ""
        where += f", crops in {Path(str(save_dir)) / 'crops'}" if args.save_crop else ""
        print(f"{' and '.join(read)}, {n_dets} detections{where}")
    return 0


def found_text(names: Sequence[str], scores: Sequence[float], listed: int = 8) -> str:
    """What one image or frame holds, for ``rtdetr predict``'s line: each detection with its score when there are
    at most ``listed``, else the count per class (most first) and the range of scores."""
    if len(names) <= listed:
        return ", ".join(f"{n} {s:.2f}" for n, s in zip(names, scores)) or "nothing"
    counts = ", ".join(f"{k} {n}" for n, k in Counter(names).most_common())
    return f"{counts} (scores {min(scores):.2f}-{max(scores):.2f})"


def _cmd_export(args: argparse.Namespace) -> int:
    from rtdetr.api import RTDETR

    det = RTDETR(args.model, device="cpu")
    report = det.export(
        format=args.format,
        output=args.output,
        image_size=args.size,
        opset=args.opset,
        max_det=args.max_det,
        decoder_depth=args.decoder_depth,
        simplify=args.simplify,
        check=not args.no_check,
        int8=args.int8,
        calibration=args.calib,
        class_mask_input=not args.no_class_mask,
    )
    print(f"wrote {report['path']} (opset {report['opset']}, input {size_text(report['image_size'])})")
    if report["max_score_diff"] is not None:
        print(
            f"parity vs PyTorch: max |score diff| {report['max_score_diff']:.2e}, max |box diff| "
            f"{report['max_box_diff_px']:.2e} px, label agreement {report['label_agreement']:.3f}"
        )
    for key in ("int8_path", "openvino_path", "openvino_int8_path"):
        if key in report:
            print(f"wrote {report[key]}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from rtdetr.bench.latency import benchmark_detector
    from rtdetr.data import load_image

    if args.all_paths:
        return _benchmark_all_paths(args)
    det = _open(args)
    image = load_image(args.image) if args.image else None
    det.backend.set_decoder_depth(args.decoder_depth)
    res = benchmark_detector(det, args.batch, args.warmup, args.runs, args.threads, image, args.size)
    if args.yolo:
        from rtdetr.bench.latency import _demo_image
        from rtdetr.bench.yolo import benchmark_yolo

        res["yolo"] = benchmark_yolo(
            args.yolo, image or _demo_image(), args.yolo_conf, args.warmup, args.runs, args.threads,
            max(res["image_size"]), str(det.device),
        )  # fmt: skip
    if args.output:
        Path(args.output).write_text(arg.dumps(res))
    if args.json:
        print(arg.dumps(res))
        return 0
    print(
        f"{res['backend']}, {res['threads']} threads, input {size_text(res['image_size'])}, "
        f"median of {args.runs} runs (p90 in brackets), ms"
    )
    print(f"{'batch':>5}{'preprocess':>16}{'model':>18}{'postprocess':>16}{'end-to-end':>18}{'img/s':>9}")
    for r in res["results"]:
        cells = _timing_cells(r, ("preprocess", "model", "postprocess", "end_to_end"))
        print(
            f"{r['batch']:>5}{cells['preprocess']:>16}{cells['model']:>18}{cells['postprocess']:>16}"
            f"{cells['end_to_end']:>18}{r['images_per_s']:>9.2f}"
        )
    if "yolo" in res:
        print(f"YOLO {res['yolo']['model']} (Ultralytics, batch 1; post-processing includes NMS), ms")
        print(f"{'conf':>7}{'preprocess':>16}{'inference':>18}{'post + NMS':>16}{'end-to-end':>18}{'boxes':>8}")
        for r in res["yolo"]["results"]:
            cells = _timing_cells(r, ("preprocess", "inference", "postprocess_nms", "end_to_end"))
            print(
                f"{r['conf']:>7g}{cells['preprocess']:>16}{cells['inference']:>18}{cells['postprocess_nms']:>16}"
                f"{cells['end_to_end']:>18}{r['detections']:>8}"
            )
    return 0


def _benchmark_all_paths(args: argparse.Namespace) -> int:
    from rtdetr.bench.paths import benchmark_paths, format_paths
    from rtdetr.data import load_image

    if str(args.model).endswith((".onnx", ".xml")):
        raise SystemExit("rtdetr benchmark: --all-paths exports the graphs itself; give a checkpoint or variant")
    if args.device not in ("auto", "cpu") or args.batch != [1]:
        raise SystemExit("rtdetr benchmark: --all-paths times the CPU paths at batch 1 (drop --device/--batch)")
    res = benchmark_paths(
        args.model, args.threads, args.warmup, args.runs, args.calib, load_image(args.image) if args.image else None,
        image_size=args.size, log=lambda line: print(line, file=sys.stderr, flush=True),
    )  # fmt: skip
    if args.output:
        Path(args.output).write_text(arg.dumps(res))
    print(arg.dumps(res) if args.json else format_paths(res))
    return 0


def _timing_cells(row: dict, stages: Sequence[str]) -> dict[str, str]:
    """``"median (p90)"`` per stage of one benchmark row."""
    return {k: f"{row[k]['median_ms']:.1f} ({row[k]['p90_ms']:.1f})" for k in stages}


def _fast(args: argparse.Namespace) -> dict:
    """The speed options as given (an exported graph refuses anything but the default precision and layout)."""
    return {
        "precision": args.precision,
        "channels_last": args.channels_last,
        "threads": args.threads,
        "compile": args.compile,
        "cuda_graph": args.cuda_graph,
    }


def _open(args: argparse.Namespace, say: bool = True) -> Any:
    """The :class:`rtdetr.RTDETR` a command runs; with ``say``, after telling on stderr which path it takes and
    why (a command that still validates options against the model says it afterwards: :func:`_say_path`)."""
    from rtdetr.api import RTDETR

    det = RTDETR(args.model, device=args.device, **_fast(args))
    if say:
        _say_path(det)
    return det


def _say_path(det: Any) -> None:
    b = det.backend
    layout = ", channels_last" if b.channels_last else ""
    reason = getattr(b, "precision_reason", "")
    mode = getattr(b, "compile", None)  # the first batch waits for it: say so, or it looks like a hang
    compiled = (
        f"; compiled ({mode}): each batch size compiles at its first use, about 30 s on 2 CPU cores" if mode else ""
    )
    print(
        f"{b.kind} on {det.device}: {b.precision}{layout}" + (f" ({reason})" if reason else "") + compiled,
        file=sys.stderr,
        flush=True,
    )


def _cmd_serve(args: argparse.Namespace) -> int:

    from rtdetr.serve import serve

    cfg = from_args(args, ServeConfig)
    kwargs = _fast(args)
    serve(
        args.model, args.host, args.port, cfg, fuse=not args.no_fuse, decoder_depth=args.decoder_depth,
        image_size=args.size, device=args.device, **kwargs,
    )  # fmt: skip
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from rtdetr.demo import main as demo

    return demo(args.rest, prog="rtdetr demo")


#: the function behind each command
_HANDLERS: dict[str, Handler] = {
    "info": _cmd_info,
    "convert": _cmd_convert,
    "train": _cmd_train,
    "val": _cmd_val,
    "predict": _cmd_predict,
    "export": _cmd_export,
    "benchmark": _cmd_benchmark,
    "serve": _cmd_serve,
    "check-data": _cmd_check_data,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 failure, 2 usage error). A torchrun process ends here,
    after its run, without the interpreter's finalization (see :func:`exit_skipping_finalization`)."""
    code = _run(argv)
    distributed = sys.modules.get("rtdetr.engine.distributed")  # not imported: no group joined (and no torch import)
    if distributed is not None and distributed.joined_a_group():
        distributed.exit_skipping_finalization(code)
    return code


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser(_HANDLERS)
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "demo":  # what parse_args says; the demo parses its own
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    if getattr(args, "num_classes", None) is not None:
        args.non_strict = True
    func: Handler = args.func
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        code = func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at interpreter exit
        return code
    except KeyboardInterrupt as e:
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"rtdetr {args.command}: {what}" + (f"; {e}" if str(e) else ""), file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130  # the shell's codes for these signals
    except BrokenPipeError:  # the reader went away (`rtdetr check-data ... | head`): stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, RuntimeError, OSError, ImportError) as e:
        print(f"rtdetr {args.command}: error: {arg.error_text(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
