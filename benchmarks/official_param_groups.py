"""Optimizer groups of the shipped COCO recipes against the official code's, parameter by parameter.

The official code builds its AdamW groups from each config's ``optimizer.params`` (regular expressions on
parameter names; ``YAMLConfig.optimizer``). This script builds each official model and its optimizer from the
official config, and ours from the recipe that reproduces it (``train.param_groups``), and compares every
trainable parameter's learning rate and weight decay by name (official spellings mapped to ours). It also
reports how many would differ under the backbone/head split that a recipe without rules gets, for the record.

Needs the official code (``../shared/peers/rtdetr_official``) and torchvision, so it runs in a separate
environment (``/tmp/peer``: the registry's torch + torchvision; see ``official_parity.py``)::

    PYTHONPATH=src /tmp/peer/bin/python benchmarks/official_param_groups.py \
        --out benchmarks/results_official_param_groups.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from official_parity import official_code  # noqa: E402
from rtdetr.convert.official import official_keys_to_ours  # noqa: E402
from rtdetr.engine.optim import param_groups  # noqa: E402
from rtdetr.models import build_model  # noqa: E402
from rtdetr.recipe import load_recipe  # noqa: E402

#: our recipe -> the official config it reproduces (code base folder, config)
RECIPES = {
    **{
        name: ("rtdetrv2_pytorch", f"configs/rtdetrv2/{name}.yml")
        for name in (
            "rtdetrv2_r18vd_120e_coco",
            "rtdetrv2_r34vd_120e_coco",
            "rtdetrv2_r50vd_m_7x_coco",
            "rtdetrv2_r50vd_6x_coco",
            "rtdetrv2_r101vd_6x_coco",
            "rtdetrv2_hgnetv2_l_6x_coco",
            "rtdetrv2_hgnetv2_x_6x_coco",
        )
    },
    **{  # the v1 recipes as the RT-DETRv2 code base runs them (with its LR warm-up)
        name: ("rtdetrv2_pytorch", f"configs/rtdetr/{name}.yml")
        for name in (
            "rtdetr_r18vd_6x_coco",
            "rtdetr_r34vd_6x_coco",
            "rtdetr_r50vd_m_6x_coco",
            "rtdetr_r50vd_6x_coco",
            "rtdetr_r101vd_6x_coco",
        )
    },
}


def by_name(model: torch.nn.Module, groups: list[dict]) -> dict[str, tuple[float, float]]:
    """``{parameter name: (lr, weight_decay)}`` of ``groups``' parameters (names from ``model``)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (float(g["lr"]), float(g["weight_decay"])) for g in groups for p in g["params"]}


def differences(official: dict[str, tuple], ours: dict[str, tuple]) -> dict:
    """Where the two ``{name: (lr, wd)}`` maps disagree: values, and names on one side only."""
    differ = {n: {"official": official[n], "ours": ours[n]} for n in official.keys() & ours.keys()
              if official[n] != ours[n]}  # fmt: skip
    return {
        "compared": len(official.keys() & ours.keys()),
        "differ": len(differ),
        "examples": dict(sorted(differ.items())[:8]),
        "official_only": sorted(official.keys() - ours.keys())[:8],
        "ours_only": sorted(ours.keys() - official.keys())[:8],
    }


def compare_recipe(recipe: str, official_root: Path) -> dict:
    folder, config = RECIPES[recipe]
    with official_code(official_root / folder) as off:
        cfg = off.YAMLConfig(config, PResNet={"pretrained": False}, HGNetv2={"pretrained": False})
        official_model = cfg.model
        official = by_name(official_model, cfg.optimizer.param_groups)
    run = load_recipe(recipe)
    model = build_model(run.model)
    known = {n for n, _ in model.named_parameters()}
    official = official_keys_to_ours(official, known)
    groups = param_groups(model, run.train)
    ours = by_name(model, groups)
    split = dataclasses.replace(run.train, param_groups=(), backbone_lr=float(run.train.lr or 1e-4) / 10)
    if recipe == "rtdetrv2_r18vd_120e_coco":  # the recipe's backbone lr before the rules: the detector's
        split = dataclasses.replace(split, backbone_lr=run.train.lr)
    row = {
        "recipe": recipe,
        "official_config": f"{folder}/{config}",
        "groups_official": [
            {"lr": g["lr"], "weight_decay": g["weight_decay"], "tensors": len(list(g["params"]))}
            for g in cfg.optimizer.param_groups
        ],
        "groups_ours": [
            {"name": g["name"], "lr": g["lr"], "weight_decay": g["weight_decay"], "tensors": len(g["params"])}
            for g in groups
        ],
        "rules": differences(official, ours),
        "split_without_rules": differences(official, by_name(model, param_groups(model, split))),
    }
    row["ok"] = (
        row["rules"]["differ"] == 0
        and not row["rules"]["official_only"]
        and not row["rules"]["ours_only"]
        and row["rules"]["compared"] > 0
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, default=Path(__file__).parents[2] / "shared/peers/rtdetr_official")
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for recipe in args.recipes:
        row = compare_recipe(recipe, args.official.resolve())
        rules, split = row["rules"], row["split_without_rules"]
        print(f"{recipe}: {rules['compared']} tensors, {rules['differ']} differ with the rules "
              f"({split['differ']} under the backbone/head split); ok={row['ok']}")  # fmt: skip
        rows.append(row)
    result = {"torch": torch.__version__, "recipes": rows, "ok": all(r["ok"] for r in rows)}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
