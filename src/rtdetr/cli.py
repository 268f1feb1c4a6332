"""Command line: ``rtdetr <command> ...``. Thin: parse, call the library, print; errors exit non-zero with a
one-line message naming the problem."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _cmd_info(args: argparse.Namespace) -> int:
    from rtdetr.bench.profile import count_gflops, count_parameters
    from rtdetr.models import create_model, get_variant, list_models

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
            row["gflops"] = round(count_gflops(model, (args.size, args.size)), 1)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'variant':<22}{'params(M)':>10}{'GFLOPs':>9}{'COCO AP':>9}{'dec layers':>11}"
    print(header)
    print("-" * len(header))
    for r in rows:
        gflops = r.get("gflops", r["gflops_paper"])
        ap = "-" if r["coco_ap"] is None else f"{r['coco_ap']:.1f}"
        print(f"{r['name']:<22}{r['params_m']:>10.2f}{gflops:>9.1f}{ap:>9}{r['decoder_layers']:>11}")
    if not args.measure:
        print("\nGFLOPs at 640x640 from the published table; --measure counts them on this machine.")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from rtdetr.convert import load_model, save_model

    overrides = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = load_model(
        args.source, variant=args.variant, weights_only=not args.trust, strict=not args.non_strict, **overrides
    )
    out = save_model(model, args.output, extra={"converted_from": str(args.source)})
    assert model.config is not None
    print(f"wrote {out} ({model.config.name}, {model.config.num_classes} classes)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from rtdetr.config import load_recipe
    from rtdetr.engine.trainer import Trainer

    overrides = list(args.overrides)
    for key, value in (
        ("data.train", args.data),
        ("data.val", args.val),
        ("model.name", args.model),
        ("train.epochs", args.epochs),
        ("train.batch_size", args.batch),
        ("train.output_dir", args.output),
        ("train.device", args.device),
        ("init_from", args.init_from),
        ("resume", args.resume),
    ):
        if value is not None:
            overrides.insert(0, f"{key}={value}")
    cfg = load_recipe(args.recipe, overrides)
    result = Trainer(cfg).fit()
    print(f"best AP {result['best_ap']:.4f} at epoch {result['best_epoch']}; outputs in {result['output_dir']}")
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from rtdetr.data.check import check_dataset

    report = check_dataset(args.path, args.split, args.format, decode=not args.no_decode)
    print(report.format())
    return 0 if report.ok or not args.strict else 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtdetr", description="RT-DETR real-time object detection.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="list model variants with parameters and GFLOPs")
    info.add_argument("pattern", nargs="?", default="*", help="shell pattern over variant names (default: all)")
    info.add_argument("--measure", action="store_true", help="build each model and count params/GFLOPs here")
    info.add_argument("--size", type=int, default=640, help="input side for --measure (default 640)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)

    conv = sub.add_parser("convert", help="convert an official .pth or HF safetensors checkpoint to ours")
    conv.add_argument("source", help="official .pth/.pt, HF model.safetensors (config.json beside it), or ours")
    conv.add_argument("output", help="output .pth (weights + model config)")
    conv.add_argument("--variant", help="pin the variant name instead of inferring it (e.g. rtdetrv2_r18vd_dsp)")
    conv.add_argument("--num-classes", type=int, help="re-head for another class count (implies --non-strict)")
    conv.add_argument("--non-strict", action="store_true", help="load what fits, leave the rest randomly initialised")
    conv.add_argument("--trust", action="store_true", help="allow unpickling arbitrary objects (trusted files only)")
    conv.set_defaults(func=_cmd_convert)

    train = sub.add_parser(
        "train",
        help="train a model (recipe YAML and/or key=value overrides)",
        description="Train RT-DETR. Settings come from an optional recipe YAML, then the "
        "options below, then dotted overrides such as train.lr=2e-4 model.decoder.num_layers=4.",
    )
    train.add_argument("overrides", nargs="*", help="dotted key=value overrides (model.*, data.*, train.*)")
    train.add_argument("--recipe", "-c", help="recipe YAML (sections: model, data, train)")
    train.add_argument("--data", help="training set: COCO json, YOLO data.yaml/images folder, or VOC folder")
    train.add_argument("--val", help="validation set (same forms)")
    train.add_argument("--model", help="variant name, e.g. rtdetr_r18vd (see 'rtdetr info')")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch", type=int, help="global batch size")
    train.add_argument("--output", help="output folder (checkpoints, logs, curves)")
    train.add_argument("--device", help="cpu, cuda, cuda:1 or auto")
    train.add_argument("--init-from", help="start from this checkpoint (official, HF or ours); new class count OK")
    train.add_argument("--resume", help="continue a run exactly from its last.pth")
    train.set_defaults(func=_cmd_train)

    check = sub.add_parser("check-data", help="summarise a dataset and list its problems")
    check.add_argument("path", help="COCO json, YOLO data.yaml/images folder, or VOC folder")
    check.add_argument("--split", default="train")
    check.add_argument("--format", default="auto", choices=["auto", "coco", "yolo", "voc"])
    check.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    check.add_argument("--strict", action="store_true", help="exit 1 when any problem is found")
    check.set_defaults(func=_cmd_check_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 failure, 2 usage error)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "num_classes", None) is not None:
        args.non_strict = True
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"rtdetr {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as e:
        print(f"rtdetr {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
