"""Training logs: CSV (one row per epoch), TensorBoard when installed, and PNG curves."""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rtdetr.data.records import DatasetIndex

__all__ = ["RunLogger", "format_row", "held_log_records", "log_index", "plot_curves", "progress_bar", "setup_logging",
           "write_csv"]  # fmt: skip

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

    def load_existing(self, upto_epoch: int, upto_step: int | None = None) -> None:
        """On resume: keep the rows already written for epochs ``1..upto_epoch`` (the checkpoint's epoch) and the
        ``curve.csv`` points up to step ``upto_step``; rows of what the run is about to redo (killed after logging,
        before checkpointing) are dropped. Numbers read back keep their type (epoch 3, not 3.0)."""
        self.rows = [
            r for r in _read_rows(self.out_dir / "metrics.csv")
            if isinstance(r.get("epoch"), int | float) and r["epoch"] <= upto_epoch
        ]  # fmt: skip
        self.curve_rows = [
            r for r in _read_rows(self.out_dir / "curve.csv")
            if upto_step is None or (isinstance(r.get("step"), int | float) and r["step"] <= upto_step)
        ]  # fmt: skip

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


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV this logger wrote (none when it does not exist), numbers as numbers."""
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _num(v: str | None) -> Any:
    """A CSV cell: an int where it is written as one, else a float, else the text; empty is NaN."""
    if v in ("", None):
        return math.nan
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
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


_SHOWN = ("train_loss", "AP", "AP50", "lr", "time_s", "skipped_steps")


def format_row(row: dict[str, Any]) -> str:
    """The epoch row's main figures as ``key=value`` text for the log."""

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in row.items() if k in _SHOWN)


def eta_note(elapsed_s: float, epochs_done: int, epochs_left: int, budget_left_s: float | None = None) -> str:
    """``"; about 1 h 05 min left (12 epochs)"`` from the wall time of the epochs run so far (evaluations and
    checkpoints included), capped by a time budget's training time left; empty when nothing is left."""
    if epochs_left <= 0 or epochs_done <= 0 or (budget_left_s is not None and budget_left_s <= 0):
        return ""
    left = elapsed_s / epochs_done * epochs_left
    until = f"{epochs_left} epoch{'s' * (epochs_left != 1)}"
    if budget_left_s is not None and budget_left_s < left:
        left, until = budget_left_s, "the time budget's end"
    minutes = round(left / 60)
    text = f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"
    return f"; about {text} left ({until})"


def epoch_desc(epoch: int, epochs: int, budget_steps: int | None, steps_per_epoch: int) -> str:
    """The progress bar's label for 1-based ``epoch``: ``"epoch 3/72"``; where a time budget sets the schedule
    and ends the run sooner (``budget_steps``: the optimizer steps it holds at the pace so far, from
    :func:`rtdetr.engine.optim.expected_steps`), ``"epoch 3/~5 (time budget)"``."""
    budget_epochs = -(-budget_steps // steps_per_epoch) if budget_steps else epochs
    if budget_epochs >= epochs:
        return f"epoch {epoch}/{epochs}"
    return f"epoch {epoch}/~{max(budget_epochs, epoch)} (time budget)"


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0) -> Any:
    """A tqdm bar over ``total`` steps starting at ``initial`` (a resumed epoch), or None."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    every = 0.5 if sys.stderr.isatty() else 30
    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True, mininterval=every)


class _Keep(logging.Handler):
    """Keeps the records it is given (see :func:`held_log_records`)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def held_log_records(enabled: bool = True) -> Iterator[list[logging.LogRecord]]:
    """Within the block, what the ``rtdetr`` loggers emit is kept instead of printed, for
    :func:`setup_logging` to log once the run's log file exists (a warning while reading the data was printed
    bare, before the run's log began, and missing from ``log.txt``). Where the block raises, the records are
    printed as they would have been. With ``enabled`` False it changes nothing."""
    keep = _Keep()
    if not enabled:
        yield keep.records
        return
    saved, propagate = log.handlers[:], log.propagate
    log.handlers, log.propagate = [keep], False
    raised = True
    try:
        yield keep.records
        raised = False
    finally:
        log.handlers, log.propagate = saved, propagate
        if raised:
            for record in keep.records:
                log.handle(record)


def setup_logging(path: Path, held: Sequence[logging.LogRecord] = ()) -> None:
    """Log the ``rtdetr`` logger to stdout and ``path`` (replacing the handlers of an earlier run), then the
    records ``held`` by :func:`held_log_records`."""
    if any(getattr(h, "_rtdetr", False) for h in log.handlers):
        for h in list(log.handlers):
            log.removeHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    for h in (logging.StreamHandler(sys.stdout), logging.FileHandler(path)):
        h.setFormatter(fmt)
        setattr(h, "_rtdetr", True)  # noqa: B010
        log.addHandler(h)
    for record in held:
        log.handle(record)


def log_index(name: str, idx: DatasetIndex) -> None:
    """One line describing a parsed dataset, then its notes and first 10 problems as warnings."""
    extra = (f"; dropped {dict(idx.dropped)}" if idx.dropped else "") + (
        f"; changed {dict(idx.adjusted)}" if idx.adjusted else ""
    )
    log.info("%s: %s (%s) %d images, %d boxes, %d classes%s", name, idx.source, idx.format, len(idx.records),
             idx.num_boxes(), idx.num_classes, extra)  # fmt: skip
    for note in idx.notes:
        log.warning("%s data: %s", name, note)
    for problem in idx.problems[:10]:
        log.warning("%s data: %s", name, problem)
    if len(idx.problems) > 10:
        log.warning("%s data: %d more problems (rtdetr check-data lists them)", name, len(idx.problems) - 10)
