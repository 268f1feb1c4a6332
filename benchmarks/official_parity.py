"""Parity with the official RT-DETR code, run side by side: for each official variant, build the official model
from its config, redraw every weight and statistic (``rtdetr.ops.compare.randomize_for_parity``: large sampling
offsets and boxes, spread encoder scores), save it as an official release file, load that file with our
``load_model`` and compare

* inference outputs (float64, queries paired one-to-one, difference relative to the largest logit; the input
  is drawn so that the top-k cut has no near-tie; at 640 px the outer stride-8 anchors are invalid), also at
  every decoder depth chosen at inference (ours' ``set_decoder_depth(d)`` against the official decoder's
  ``eval_idx = d - 1``);
* training-mode outputs on a batch with denoising (each model builds its own denoising groups, the official
  one with the official builder, from the same seed): every final, auxiliary, encoder and denoising prediction;
* the criterion: ours and the official one on the same (official) outputs, every term; and, for information,
  each model's loss on its own outputs (where a last-digit difference can flip a near-tied Hungarian match
  and move a deep layer's term by more);
* the gradients: each model's total training loss goes backward, and every parameter's gradient is compared
  with the official one of the same name (a ``detach`` in another place or a stem frozen on one side only
  changes no output, only these).

Everything runs in float64 and is judged at ``--tol`` (1e-9): the official code makes its AIFI position
embeddings and training-time anchors in float32 whatever the model's dtype, so both are made in float64 here
(the evaluation anchors, made at construction or stored in a v2 file, are the same on both sides and left as
they are). Measured: the two codes agree to the last bits (inference and training outputs 0.0, gradients
within 3e-16).

The official code needs torchvision, which the CPU torch build here lacks, so this is a script for a separate
environment, not a CI test::

    python -m venv /tmp/peer && /tmp/peer/bin/pip install torch torchvision scipy pyyaml pillow
    PYTHONPATH=src /tmp/peer/bin/python benchmarks/official_parity.py \
        --official ../shared/peers/rtdetr_official --out benchmarks/results_official_parity.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rtdetr.convert import load_model
from rtdetr.convert.official import official_keys_to_ours
from rtdetr.engine.hardware import cpu_info
from rtdetr.loss import RTDETRCriterion
from rtdetr.models.denoising import build_denoising_group
from rtdetr.models.encoder import build_2d_sincos_position_embedding
from rtdetr.ops.compare import max_query_set_diff, randomize_for_parity, untied_input

# variant -> (code folder, config) as in ../shared/reference/official_state_dict_keys.json
VARIANTS = {
    "rtdetr_r18vd": ("rtdetr_pytorch", "configs/rtdetr/rtdetr_r18vd_6x_coco.yml"),
    "rtdetr_r34vd": ("rtdetr_pytorch", "configs/rtdetr/rtdetr_r34vd_6x_coco.yml"),
    "rtdetr_r50vd_m": ("rtdetr_pytorch", "configs/rtdetr/rtdetr_r50vd_m_6x_coco.yml"),
    "rtdetr_r50vd": ("rtdetr_pytorch", "configs/rtdetr/rtdetr_r50vd_6x_coco.yml"),
    "rtdetr_r101vd": ("rtdetr_pytorch", "configs/rtdetr/rtdetr_r101vd_6x_coco.yml"),
    "rtdetrv2_r18vd": ("rtdetrv2_pytorch", "configs/rtdetrv2/rtdetrv2_r18vd_120e_coco.yml"),
    "rtdetrv2_r18vd_dsp": ("rtdetrv2_pytorch", "configs/rtdetrv2/rtdetrv2_r18vd_dsp_3x_coco.yml"),
    "rtdetrv2_r34vd": ("rtdetrv2_pytorch", "configs/rtdetrv2/rtdetrv2_r34vd_120e_coco.yml"),
    "rtdetrv2_r50vd_m": ("rtdetrv2_pytorch", "configs/rtdetrv2/rtdetrv2_r50vd_m_7x_coco.yml"),
    "rtdetrv2_r50vd": ("rtdetrv2_pytorch", "configs/rtdetrv2/rtdetrv2_r50vd_6x_coco.yml"),
    "rtdetrv2_r101vd": ("rtdetrv2_pytorch", "configs/rtdetrv2/rtdetrv2_r101vd_6x_coco.yml"),
    "rtdetrv2_hgnetv2_l": ("rtdetrv2_pytorch", "configs/rtdetrv2/rtdetrv2_hgnetv2_l_6x_coco.yml"),
    "rtdetrv2_hgnetv2_x": ("rtdetrv2_pytorch", "configs/rtdetrv2/rtdetrv2_hgnetv2_x_6x_coco.yml"),
}
TARGETS = [
    {
        "labels": torch.tensor([1, 0, 79]),
        "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.6, 0.7]]),
    },
    {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.05, 0.94, 0.1, 0.12]])},
]


@contextlib.contextmanager
def official_code(root: Path) -> Iterator[types.ModuleType]:
    """Import the official package ``src`` of ``root`` (v1 and v2 both call it ``src``); the data package is
    stubbed (only the model, criterion and matcher are needed)."""
    for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        if root.name == "rtdetr_pytorch":
            sys.modules["src.data"] = types.ModuleType("src.data")
        import src  # noqa: F401  (registers the official modules)
        from src.core import YAMLConfig

        yield types.SimpleNamespace(YAMLConfig=YAMLConfig)  # type: ignore[misc]
    finally:
        os.chdir(cwd)
        sys.path.remove(str(root))


def official_config(off: types.SimpleNamespace, name: str) -> Any:
    """The official ``YAMLConfig`` of variant ``name`` (inside :func:`official_code`), backbone not pretrained
    (nothing is downloaded); its model is built on first access to ``.model``."""
    backbone = "HGNetv2" if "hgnetv2" in name else "PResNet"
    return off.YAMLConfig(VARIANTS[name][1], **{backbone: {"pretrained": False}})


def redrawn_model(cfg: Any, seed: int) -> torch.nn.Module:
    """The config's official model, built and then every weight redrawn (``randomize_for_parity``) from ``seed``."""
    torch.manual_seed(seed)
    model = cfg.model
    randomize_for_parity(model)
    return model


def save_release(model: torch.nn.Module, path: Path) -> Path:
    """``model``'s weights as an official release file (``{"ema": {"module": ...}}``, as the official training
    writes them)."""
    torch.save({"ema": {"module": model.state_dict(), "updates": 1}, "last_epoch": 71}, path)
    return path


@contextlib.contextmanager
def same_denoising_groups(seed: int = 7) -> Iterator[None]:
    """Each decoder builds its own denoising queries, the official one with the official builder, each call
    from the same seed (the builders draw alike: ``tests/parity/test_hf_denoising.py`` checks ours against HF's
    port of the official one, and equal training outputs here check it against the official one)."""
    decoders = [m for n, m in sys.modules.items() if n.endswith(("rtdetr_decoder", "rtdetrv2_decoder"))]
    import rtdetr.models.decoder as ours

    def seeded(build):  # noqa: ANN001, ANN202
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            torch.manual_seed(seed)
            return build(*args, **kwargs)

        return call

    saved = [m.get_contrastive_denoising_training_group for m in decoders]
    for m, build in zip(decoders, saved):
        m.get_contrastive_denoising_training_group = seeded(build)
    ours.build_denoising_group = seeded(build_denoising_group)
    try:
        yield
    finally:
        for m, build in zip(decoders, saved):
            m.get_contrastive_denoising_training_group = build
        ours.build_denoising_group = build_denoising_group


def float64_position_embeddings() -> None:
    """The official encoder builds its AIFI position embeddings in float32 whatever the model's dtype (at
    construction for evaluation, at every training forward): make them in float64, as ours are in a float64
    model, so that float32 rounding (1e-7 relative) does not grow through the refinement layers. The formula
    is ours, which equals the official one on square maps (``tests/models/test_encoder.py`` checks it against
    the official formula); the comparison runs square inputs only."""
    encoder = sys.modules["src.zoo.rtdetr.hybrid_encoder"].HybridEncoder

    def embedding(w: int, h: int, embed_dim: int = 256, temperature: float = 10000.0) -> torch.Tensor:
        assert w == h, "the official layout differs from ours on non-square maps"
        return build_2d_sincos_position_embedding(int(h), int(w), embed_dim, temperature, dtype=torch.float64)

    encoder.build_2d_sincos_position_embedding = staticmethod(embedding)


def depth_parity(official: torch.nn.Module, ours: torch.nn.Module, x: torch.Tensor) -> float:
    """The decoder depth chosen at inference without retraining: ours run to each depth ``d``
    (``set_decoder_depth``) against the official model evaluating its layer ``d - 1`` (its decoder's
    ``eval_idx``); the largest difference over the depths (queries paired one-to-one). Both are left as found."""
    inner, saved = official.decoder.decoder, (official.decoder.decoder.eval_idx, ours.decoder_depth)
    worst = 0.0
    try:
        for depth in range(1, ours.num_decoder_layers + 1):
            inner.eval_idx = depth - 1
            ours.set_decoder_depth(depth)
            with torch.no_grad():
                worst = max(worst, max_query_set_diff(official(x), ours(x)))
    finally:
        inner.eval_idx = saved[0]
        ours.set_decoder_depth(saved[1])
    return worst


def gradient_parity(official: torch.nn.Module, ours: torch.nn.Module) -> dict:
    """After each model's total training loss went backward: every parameter's gradient against the official
    one of the same name (an official HGNetv2 stem spelling read as ours), relative to that tensor's largest
    official entry; and the names that got a gradient on one side only (a ``detach`` in another place, a stem
    frozen on one side only)."""
    mine = {n: p.grad for n, p in ours.named_parameters()}
    theirs = official_keys_to_ours({n: p.grad for n, p in official.named_parameters()}, set(mine))
    common = theirs.keys() & mine.keys()
    one_sided = sorted(n for n in common if (theirs[n] is None) != (mine[n] is None))
    worst, where, compared = 0.0, "", 0
    for name in sorted(common):
        g, h = theirs[name], mine[name]
        if g is None or h is None:
            continue
        compared += 1
        diff = float((h - g).abs().max() / g.abs().max().clamp_min(1e-300))
        if diff > worst:
            worst, where = diff, name
    return {
        "grad_tensors": compared,
        "grad_max_rel_diff": worst,
        "grad_worst": where,
        "grad_one_sided": one_sided,
        "params_only_official": sorted(theirs.keys() - mine.keys()),
        "params_only_ours": sorted(mine.keys() - theirs.keys()),
    }


def _groups(out: dict) -> list[dict]:
    """Every prediction group of a training output (final, auxiliary, encoder, denoising), in a fixed order."""
    return [out, *out["aux_outputs"], *out["enc_aux_outputs"], *out.get("dn_aux_outputs", [])]


def _max_rel(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - v).abs() / v.abs().clamp_min(1e-12)) for k, v in b.items() if k in a)


def compare_variant(name: str, official_root: Path, size: int, seed: int) -> dict:
    folder, config = VARIANTS[name]
    t0 = time.time()
    with official_code(official_root / folder) as off:
        cfg = official_config(off, name)
        float64_position_embeddings()  # before the model is built: its evaluation embeddings are made then
        model, criterion = redrawn_model(cfg, seed), cfg.criterion
        if hasattr(model, "multi_scale"):
            model.multi_scale = None  # v1 resizes its training input at random
        with tempfile.TemporaryDirectory() as tmp:
            path = save_release(model, Path(tmp) / f"{name}.pth")
            ours = load_model(path, variant=name if name.endswith("_dsp") else None)
        row: dict = {"variant": name, "config": f"{folder}/{config}", "our_config": ours.config.name}

        model.eval().double(), ours.eval().double()
        # the official decoder makes its training-time anchors in float32 whatever the model's dtype: make them
        # in float64 too, so that float32 rounding does not grow through the refinement layers (its evaluation
        # anchors, like ours, are the file's)
        model.decoder._generate_anchors = functools.partial(model.decoder._generate_anchors, dtype=torch.float64)
        # gap 2e-4 between the top-k cut's scores: no near-tie there, whose order would not be a model property
        x = untied_input(ours, (1, 3, size, size), gap=2e-4, tries=50)
        with torch.no_grad():
            ref, out = model(x), ours(x)
        # relative to the largest logit (the spread encoder scores make logits of tens)
        scale = max(1.0, float(ref["pred_logits"].abs().max()))
        row["inference_max_abs_diff"] = max_query_set_diff(ref, out)
        row["inference_max_diff"] = row["inference_max_abs_diff"] / scale
        row["depth_max_diff"] = depth_parity(model, ours, x) / scale

        model.train(), ours.train()
        xt = untied_input(ours, (2, 3, size, size), gap=2e-4, tries=50)
        with same_denoising_groups():
            targets = [{k: v.double() if v.is_floating_point() else v for k, v in t.items()} for t in TARGETS]
            out_official, out_ours = model(xt, targets), ours(xt, targets)
        n = ours.num_decoder_layers
        as_ours = dict(out_official)
        if "enc_aux_outputs" not in as_ours:  # v1 appends the encoder proposals as the last auxiliary output
            as_ours["aux_outputs"], as_ours["enc_aux_outputs"] = (
                as_ours["aux_outputs"][:-1],
                as_ours["aux_outputs"][-1:],
            )
        # queries paired one-to-one per group (equal scores inside the top-k may order them differently),
        # relative to the group's largest value (the spread encoder logits reach the thousands)
        diffs = [
            max_query_set_diff(a, b) / max(1.0, float(a["pred_logits"].detach().abs().max()))
            for a, b in zip(_groups(as_ours), _groups(out_ours), strict=True)
        ]
        if os.environ.get("PARITY_DEBUG"):
            print("group diffs", [f"{d:.1e}" for d in diffs])
        row["train_outputs_max_diff"] = max(diffs)
        ours_criterion = RTDETRCriterion(ours.config.num_classes)
        theirs_graph, mine_graph = criterion(out_official, targets), ours_criterion(out_ours, targets)
        sum(theirs_graph.values()).backward()
        sum(mine_graph.values()).backward()
        row.update(gradient_parity(model, ours))
        theirs = {k: v.detach() for k, v in theirs_graph.items()}
        same_in = {k: v.detach() for k, v in ours_criterion(as_ours, targets).items()}
        mine = {k: v.detach() for k, v in mine_graph.items()}
        if set(mine) != set(theirs):  # v1 names the encoder terms as the last auxiliary ones
            same_in = {k.replace("_enc_0", f"_aux_{n - 1}"): v for k, v in same_in.items()}
            mine = {k.replace("_enc_0", f"_aux_{n - 1}"): v for k, v in mine.items()}
        if os.environ.get("PARITY_DEBUG"):
            for k in sorted(theirs):
                print(k, float(theirs[k]), float(same_in.get(k, float("nan"))), float(mine.get(k, float("nan"))))
        row["loss_terms"] = len(theirs)
        row["loss_keys_equal"] = set(mine) == set(theirs) == set(same_in)
        row["criterion_max_rel_diff"] = _max_rel(same_in, theirs)  # both criteria on the official outputs
        row["loss_max_rel_diff"] = _max_rel(mine, theirs)  # each model's loss on its own outputs
        row["total_loss_official"] = float(sum(theirs.values()))
        row["total_loss_ours"] = float(sum(mine.values()))
    row["seconds"] = round(time.time() - t0, 1)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, default=Path("../shared/peers/rtdetr_official"))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--size", type=int, default=640, help="input side (the official eval caches 640 buffers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-9, help="float64: the two codes agree to the last bits")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args()
    official = args.official.resolve()
    torch.set_num_threads(os.cpu_count() or 1)
    meta = {
        "what": "ours (load_model of an official release file) vs the official code on the same weights",
        "official": "lyuwenyu/RT-DETR at ../shared/peers/rtdetr_official",
        "input": f"{args.size}x{args.size}, float64; inference batch 1, training batch 2 with denoising",
        "tolerance": args.tol,
        "torch": torch.__version__,
        "cpu": cpu_info().as_dict(),
        "threads": torch.get_num_threads(),
    }
    rows = []
    print(
        f"{'variant':<22}{'infer diff':>12}{'depths diff':>13}{'train out diff':>16}{'loss terms':>12}"
        f"{'criterion rel':>15}{'own-loss rel':>14}{'grad rel':>10}{'s':>7}"
    )
    for name in args.variants:
        row = compare_variant(name, official, args.size, args.seed)
        # each model's loss on its own outputs is reported, not judged (a near-tied Hungarian match may flip)
        row["ok"] = (
            max(
                row["inference_max_diff"],
                row["depth_max_diff"],
                row["train_outputs_max_diff"],
                row["criterion_max_rel_diff"],
            )
            < args.tol
            and row["loss_keys_equal"]
            and row["grad_max_rel_diff"] < args.tol
            and not row["grad_one_sided"]
        )
        rows.append(row)
        if args.out:  # after every variant: a crash later keeps what was measured
            args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        print(
            f"{name:<22}{row['inference_max_diff']:>12.2e}{row['depth_max_diff']:>13.2e}"
            f"{row['train_outputs_max_diff']:>16.2e}"
            f"{row['loss_terms']:>12}{row['criterion_max_rel_diff']:>15.2e}{row['loss_max_rel_diff']:>14.2e}"
            f"{row['grad_max_rel_diff']:>10.1e}"
            f"{row['seconds']:>7}  "
            f"{'ok' if row['ok'] else 'DIFFERS'}",
            flush=True,
        )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
