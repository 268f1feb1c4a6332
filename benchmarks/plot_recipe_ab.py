"""Summarise and plot ``results_recipe_ab_*.json`` (written by ``recipe_ab.py``): AP and AP50 (mean and spread over
seeds) at each budget, and AP against training time per recipe.

    python benchmarks/plot_recipe_ab.py [--results benchmarks/results_recipe_ab_zen3.json] [--png recipe_ab_zen3.png]
        [--at 5 10 15 20 25 30]

A run longer than a budget also yields that budget's figure from its curve (the evaluation at that training time)
when its learning rate does not depend on its length (``official`` on BCCD: constant LR); runs whose schedule follows
their budget count only with their final evaluation.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def value_at(run: dict, minutes: float) -> dict | None:
    """The run's evaluation at ``minutes`` of training: its final one if it was that long, else (schedule
    independent of the budget) the first curve point at or after that time (within one step)."""
    if abs(run["budget_min"] - minutes) < 1e-6:
        return {"AP": run["AP"], "AP50": run["AP50"]}
    # official's LR is constant unless a schedule was given (round 1 predates recipe_defaults: constant then)
    chosen = {"train.recipe_defaults=fast_small", "train.recipe_defaults=auto"} & set(run["overrides"])
    constant_lr = not chosen and not any(o.startswith("train.schedule=") for o in run["overrides"])
    if not constant_lr or run["budget_min"] < minutes:
        return None
    for point in run["curve"]:
        if point["train_time_s"] >= minutes * 60 - 1:
            return point if point["train_time_s"] <= minutes * 60 + 30 else None
    return None


def summary(runs: list[dict], extra_minutes: tuple[float, ...] = ()) -> list[dict]:
    """Per (dataset, recipe, minutes): AP/AP50 mean, sd and range over seeds, at every run budget and at
    ``extra_minutes`` (read off the curves of constant-LR runs that long)."""
    budgets = sorted({r["budget_min"] for r in runs} | set(extra_minutes))
    rows = []
    for dataset in sorted({r["dataset"] for r in runs}):
        for recipe in sorted({r["recipe"] for r in runs if r["dataset"] == dataset}):
            mine = [r for r in runs if r["dataset"] == dataset and r["recipe"] == recipe]
            for minutes in budgets:
                vals = {r["seed"]: v for r in mine if (v := value_at(r, minutes)) is not None}
                if not vals:
                    continue
                ap = [v["AP"] for v in vals.values()]
                ap50 = [v["AP50"] for v in vals.values()]
                rows.append({
                    "dataset": dataset, "recipe": recipe, "minutes": minutes, "seeds": sorted(vals),
                    "AP_mean": statistics.mean(ap), "AP_sd": statistics.stdev(ap) if len(ap) > 1 else 0.0,
                    "AP_min": min(ap), "AP_max": max(ap),
                    "AP50_mean": statistics.mean(ap50), "AP50_sd": statistics.stdev(ap50) if len(ap50) > 1 else 0.0,
                })  # fmt: skip
    return rows


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in runs})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
        for r in runs:
            if r["dataset"] == dataset:
                groups[(r["recipe"], r["budget_min"])].append(r)
        palette = iter(["tab:red", "tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive"])
        for (recipe, budget), rs in sorted(groups.items(), key=lambda g: (g[0][0] != "fast_small", g[0])):
            color = "tab:gray" if recipe == "official" else next(palette, "tab:cyan")
            main_recipe = recipe == "official" or (recipe.startswith("fast_small") and "+" not in recipe)
            width = 2.2 if main_recipe else 1.0
            for k, r in enumerate(sorted(rs, key=lambda r: r["seed"])):
                xs = [p["train_time_s"] / 60 for p in r["curve"]]
                ys = [p["AP"] for p in r["curve"]]
                label = f"{recipe} ({budget:g} min, {len(rs)} seed{'s' if len(rs) > 1 else ''})" if k == 0 else None
                ax.plot(xs, ys, marker=".", alpha=0.85, label=label, color=color, linewidth=width)
        ax.set_title(f"{dataset}: val AP vs training time (from scratch)")
        ax.set_xlabel("training minutes (2 CPU threads; evaluations not counted)")
        ax.set_ylabel("COCO AP")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="benchmarks/results_recipe_ab_zen3.json")
    parser.add_argument("--at", type=float, nargs="*", default=[5, 10, 15, 20, 25, 30],
                        help="also report these training minutes, from the curves of constant-LR runs")  # fmt: skip
    parser.add_argument("--png", help="default: the results file with .png, e.g. recipe_ab_zen3.png")
    args = parser.parse_args(argv)
    data = json.loads(Path(args.results).read_text())
    rows = summary(data["runs"], tuple(args.at))
    cpu = data["cpu"]
    print(
        f"CPU: {cpu.get('model')} family/model {cpu.get('family/model')} ({cpu.get('class')}), {cpu.get('cores')} cores"
    )  # noqa: E501
    head = f"{'dataset':8} {'recipe':28} {'min':>5} {'seeds':>5}"
    print(f"{head}  {'AP mean ± sd [min, max]':>28}  {'AP50 mean ± sd':>16}")
    for r in rows:
        print(f"{r['dataset']:8} {r['recipe']:28} {r['minutes']:5g} {len(r['seeds']):5d}  "
              f"{r['AP_mean']:.3f} ± {r['AP_sd']:.3f} [{r['AP_min']:.3f}, {r['AP_max']:.3f}]  "
              f"{r['AP50_mean']:.3f} ± {r['AP50_sd']:.3f}")  # fmt: skip
    results = Path(args.results)
    png = Path(args.png) if args.png else results.with_name(results.stem.removeprefix("results_") + ".png")
    plot(data["runs"], png)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
