"""Training logs: CSV (one row per epoch), TensorBoard when installed, and PNG curves."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

__all__ = ["RunLogger", "plot_curves", "write_csv"]

log = logging.getLogger("rtdetr")


class RunLogger:
    """Append epoch rows to ``metrics.csv`` (the header grows as new keys appear) and mirror scalars to
    TensorBoard under ``tensorboard/`` when the package is available."""

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.out_dir = out_dir
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        self.curve_rows: list[dict[str, Any]] = []
        self.tb: Any = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except Exception as e:  # tensorboard missing or broken: CSV still works
                log.info("TensorBoard logging off (%s)", e)

    def load_existing(self, upto_epoch: int) -> None:
        """On resume: keep the rows already written for epochs ``1..upto_epoch`` (the checkpoint's epoch); rows
        of epochs the run is about to redo (killed after logging, before checkpointing) are dropped."""
        path = self.out_dir / "metrics.csv"
        if path.is_file():
            with path.open() as f:
                rows = [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]
            self.rows = [r for r in rows if isinstance(r.get("epoch"), float) and r["epoch"] <= upto_epoch]

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(tag, value, step)

    def epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        write_csv(self.out_dir / "metrics.csv", self.rows)
        for k, v in row.items():
            if isinstance(v, int | float) and k != "epoch":
                self.scalar(f"epoch/{k}", float(v), int(row["epoch"]))
        plot_curves(self.rows, self.out_dir / "curves.png")

    def curve(self, row: dict[str, Any]) -> None:
        """Append a mid-run evaluation (``train_time_s``, ``step``, ``AP``, ...) to ``curve.csv``."""
        if not self.enabled:
            return
        self.curve_rows.append(row)
        write_csv(self.out_dir / "curve.csv", self.curve_rows)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` (the header is every key in order of first appearance) atomically."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _num(v: str) -> Any:
    try:
        return float(v) if v not in ("", None) else math.nan
    except ValueError:
        return v


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Loss and metric curves per epoch as one PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, ax in (("train_loss", axes[0]), ("lr", axes[1])):
        vals = [r.get(key, math.nan) for r in rows]
        ax.plot(epochs, vals, marker="o")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    for key in ("AP", "AP50", "AP75"):
        vals = [r.get(key, math.nan) for r in rows]
        if any(isinstance(v, float) and not math.isnan(v) for v in vals):
            axes[2].plot(epochs, vals, marker="o", label=key)
    axes[2].set_title("validation")
    axes[2].set_xlabel("epoch")
    if axes[2].lines:
        axes[2].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
