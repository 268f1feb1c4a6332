"""Our exported graph against the official export, on the same weights, both run by ONNX Runtime.

For each variant: the official model from its config, every weight redrawn (``randomize_for_parity``), saved as
an official release file; the official graph exported as its ``tools/export_onnx.py`` does (``deploy()`` model
and post-processor, inputs ``images`` and ``orig_target_sizes``, outputs ``labels``, ``boxes``, ``scores``,
opset 16, batch dynamic); ours by ``export_onnx`` from ``load_model`` of the same file. Then:

* the interface: our graph's required inputs and its outputs have the official names, element types and ranks
  (an input with a default, our optional ``class_mask``, is not required), so code written for the official
  export runs ours unchanged;
* the detections: both graphs get the same two images (drawn so that the query selection has no near-tie at
  its cut) with different original sizes, through the official two-input feed; detections are paired per image
  by an optimal assignment (``compare_detections``) and must agree in labels, scores and boxes in pixels, with
  each other and with the official model run eagerly (the module the official graph was exported from). With
  discrete sampling (``_dsp``) a float32 rounding can move a sampling point to the next pixel, so a graph may
  differ from its eager model by more than the tolerances: there ours must stay as close to the official eager
  model as the official graph is.

``--broken depth`` exports ours with one decoder layer fewer, to show what the comparison detects. The official
code needs torchvision, so this runs in the official code's environment (``/tmp/peer``; see
``official_parity.py``)::

    PYTHONPATH=src /tmp/peer/bin/python benchmarks/official_export_parity.py \\
        --out benchmarks/results_official_export_parity.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from official_parity import VARIANTS, official_code, official_config, redrawn_model, save_release  # noqa: E402
from rtdetr.convert import load_model  # noqa: E402
from rtdetr.engine.hardware import cpu_info  # noqa: E402
from rtdetr.export.onnx import compare_detections, export_onnx  # noqa: E402
from rtdetr.ops.compare import untied_input  # noqa: E402

#: one of each kind: v1, v2 (bilinear sampling), v2 with discrete sampling, v2 on HGNetv2
DEFAULT_VARIANTS = ["rtdetr_r18vd", "rtdetrv2_r18vd", "rtdetrv2_r18vd_dsp", "rtdetrv2_hgnetv2_l"]
#: (width, height) of the two images' originals, as ``orig_target_sizes`` takes them
SIZES = [[640, 480], [1280, 720]]


class _OfficialExport(torch.nn.Module):
    """What the official ``tools/export_onnx.py`` exports: the deployed model, then the deployed post-processor."""

    def __init__(self, model: torch.nn.Module, post: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.postprocessor = model.deploy(), post.deploy()

    def forward(self, images: torch.Tensor, orig_target_sizes: torch.Tensor):  # noqa: ANN201
        return self.postprocessor(self.model(images), orig_target_sizes)


def interface(session) -> dict:  # noqa: ANN001
    """A graph's required inputs and its outputs as ``{"inputs"|"outputs": [[name, element type, rank], ...]}``;
    inputs with a default (an overridable initializer) are left out, as a caller need not feed them."""
    optional = {i.name for i in session.get_overridable_initializers()}
    return {
        "inputs": [[i.name, i.type, len(i.shape)] for i in session.get_inputs() if i.name not in optional],
        "outputs": [[o.name, o.type, len(o.shape)] for o in session.get_outputs()],
    }


def compare(name: str, official_root: Path, size: int, seed: int, broken: str | None) -> dict:
    import onnxruntime

    folder, config = VARIANTS[name]
    t0 = time.time()
    with official_code(official_root / folder) as off, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cfg = official_config(off, name)
        model, post = redrawn_model(cfg, seed), cfg.postprocessor
        path = save_release(model, tmp / f"{name}.pth")
        ours = load_model(path, variant=name if name.endswith("_dsp") else None).eval()
        x = untied_input(ours, (2, 3, size, size), gap=1e-3, tries=50)
        sizes = torch.tensor(SIZES, dtype=torch.int64)
        exporter = _OfficialExport(model.eval(), post.eval()).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                exporter, (x[:1], sizes[:1]), str(tmp / "official.onnx"),
                input_names=["images", "orig_target_sizes"], output_names=["labels", "boxes", "scores"],
                dynamic_axes={"images": {0: "N"}, "orig_target_sizes": {0: "N"}}, opset_version=16,
                do_constant_folding=True, dynamo=False,
            )  # fmt: skip
        depth = ours.num_decoder_layers - 1 if broken == "depth" else None
        export_onnx(ours, tmp / "ours.onnx", (size, size), check=False, decoder_depth=depth)
        opts = onnxruntime.SessionOptions()
        opts.log_severity_level = 3  # ours has an input with a default: ORT warns about it at every load
        sessions = [
            onnxruntime.InferenceSession(str(tmp / f), opts, providers=["CPUExecutionProvider"])
            for f in ("official.onnx", "ours.onnx")
        ]
        feed = {"images": x.numpy(), "orig_target_sizes": sizes.numpy()}  # the official interface only
        theirs, mine = (tuple(s.run(["labels", "boxes", "scores"], feed)) for s in sessions)
        with torch.no_grad():
            eager = tuple(t.numpy() for t in exporter(x, sizes))
        official_io, our_io = (interface(s) for s in sessions)
    pairs = {
        "graphs": (theirs, mine),
        "ours_vs_official_eager": (eager, mine),
        "official_graph_vs_eager": (eager, theirs),
    }
    found = {k: dict(zip(("max_score_diff", "max_box_diff_px", "label_agreement"), compare_detections(*v)))
             for k, v in pairs.items()}  # fmt: skip
    return {
        "variant": name,
        "config": f"{folder}/{config}",
        "official_interface": official_io,
        "our_interface": our_io,
        "same_interface": official_io == our_io,
        "detections_per_image": int(theirs[0].shape[1]),
        **found,
        "seconds": round(time.time() - t0, 1),
    }


def close(row: dict, score_tol: float, box_tol: float) -> bool:
    """Labels agree everywhere, and our graph's scores and boxes lie within the tolerances of the official graph
    and of the official eager model, or (discrete sampling) no farther from the eager model than the official
    graph."""
    if any(row[k]["label_agreement"] < 1.0 for k in ("graphs", "ours_vs_official_eager")):
        return False
    ours, floor = row["ours_vs_official_eager"], row["official_graph_vs_eager"]
    score_cap, box_cap = max(score_tol, floor["max_score_diff"]), max(box_tol, floor["max_box_diff_px"])
    within = all(
        row[k]["max_score_diff"] <= score_tol and row[k]["max_box_diff_px"] <= box_tol
        for k in ("graphs", "ours_vs_official_eager")
    )
    return within or (ours["max_score_diff"] <= score_cap and ours["max_box_diff_px"] <= box_cap)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, default=Path("../shared/peers/rtdetr_official"))
    ap.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, choices=sorted(VARIANTS), metavar="NAME")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score-tol", type=float, default=1e-4, help="float32 graphs: largest score difference")
    ap.add_argument("--box-tol", type=float, default=0.05, help="largest box difference, pixels")
    ap.add_argument("--broken", choices=["depth"], default=None, help="alter ours, to show what is detected")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    print(f"{'':<32}{'graph vs graph':^26}{'ours vs official eager':^26}{'official graph vs eager':^26}")
    print(f"{'variant':<22}{'interface':>10}" + f"{'score':>10}{'box px':>9}{'labels':>7}" * 3 + f"{'s':>7}")
    for name in args.variants:
        row = compare(name, args.official.resolve(), args.size, args.seed, args.broken)
        row["ok"] = row["same_interface"] and close(row, args.score_tol, args.box_tol)
        rows.append(row)
        cells = "".join(
            f"{row[k]['max_score_diff']:>10.1e}{row[k]['max_box_diff_px']:>9.1e}{row[k]['label_agreement']:>7.3f}"
            for k in ("graphs", "ours_vs_official_eager", "official_graph_vs_eager")
        )
        print(
            f"{name:<22}{'same' if row['same_interface'] else 'DIFFERS':>10}{cells}{row['seconds']:>7}  "
            f"{'ok' if row['ok'] else 'DIFFERS'}",
            flush=True,
        )
    result = {
        "what": "our ONNX export vs the official tools/export_onnx.py graph on the same weights, ONNX Runtime",
        "input": f"2 images {args.size}x{args.size}, original sizes {SIZES} (w, h), fed as the official graph takes",
        "tolerances": {"score": args.score_tol, "box_px": args.box_tol},
        "broken": args.broken,
        "torch": torch.__version__,
        "cpu": cpu_info().as_dict(),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
