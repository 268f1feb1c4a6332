"""The files of a training run: which folder a new run writes to, and what ``best.pth`` holds."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["RUN_FILES", "Terminated", "best_checkpoint", "finished_run", "fresh_folder", "fresh_output_dir",
           "interrupted_note", "sigterm_stops_like_ctrl_c", "train_summary", "worker_ignores_signals"]  # fmt: skip

RUN_FILES = ("last.pth", "best.pth", "metrics.csv")


def fresh_output_dir(path: Path) -> Path:
    """``path`` if no run has written there yet, else the first of ``<path>2``, ``<path>3``, ... that is free."""
    return _first_free(path, lambda d: any((d / name).exists() for name in RUN_FILES))


def fresh_folder(path: str | Path) -> Path:
    """``path`` if it does not exist or is empty, else the first of ``<path>2``, ``<path>3``, ... that is: where a
    command's default output folder goes, so that a second run never overwrites the first one's files."""
    return _first_free(Path(path), lambda d: d.exists() and (not d.is_dir() or any(d.iterdir())))


def _first_free(path: Path, taken: Callable[[Path], bool]) -> Path:
    """``path``, else ``<path>2``, ``<path>3``, ...: the first that is not ``taken``."""
    candidate, i = path, 1
    while taken(candidate):
        i += 1
        candidate = path.with_name(f"{path.name}{i}")
    return candidate


def finished_run(epochs: int, time_budget_s: float | None, done_epochs: int, trained_s: float) -> str | None:
    """Why a run resumed after ``done_epochs`` epochs and ``trained_s`` seconds of training has nothing left to
    do (every epoch trained, or the whole time budget used), with how to train further; None when it has."""
    if done_epochs >= epochs:
        trained = "its one epoch" if epochs == 1 else f"all {epochs} epochs"
        return f"it trained {trained}; to train longer, resume with more (--epochs N, train.epochs=N)"
    if time_budget_s is not None and trained_s >= time_budget_s:
        return (
            f"it used its time budget of {time_budget_s:.0f} s (stopped after epoch {done_epochs}); to train longer,"
            " resume with a larger one (--minutes M, train.time_budget_s=S)"
        )
    return None


def best_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``best.pth``: the evaluation weights (EMA when on) with config, class names and metrics, and no optimizer,
    scheduler or raw training weights (``last.pth`` keeps those for ``--resume``): about a third of the size."""
    weights = ckpt["ema"]["module"] if ckpt.get("ema") else ckpt["model"]
    drop = ("model", "ema", "optimizer", "scheduler", "scaler")
    return {"model": weights, **{k: v for k, v in ckpt.items() if k not in drop}}


def train_summary(result: dict) -> str:
    """The last line of ``rtdetr train``: the best AP and its epoch, or why there is none."""
    where = f"outputs in {result['output_dir']}"
    if result["best_epoch"] >= 1:
        return f"best AP {result['best_ap']:.4f} at epoch {result['best_epoch']}; {where}"
    if result.get("last_eval") is not None:
        return f"AP not measured (the evaluation gave none); {where}"
    return (f"no validation set, so no AP: best.pth holds the last epoch ({result.get('epochs_run')}); evaluate it "
            f"with 'rtdetr val {result['output_dir']}/best.pth --data ...'; {where}")  # fmt: skip


def interrupted_note(out_dir: Path, how: str | None = None) -> str:
    """What an interrupted run (Ctrl-C) left in ``out_dir``: the epoch its ``last.pth`` holds (and how far into the
    next one, when it stopped inside it) and how to go on (``how``; default: the ``rtdetr train`` command)."""
    last = out_dir / "last.pth"
    if not last.is_file():
        return f"{out_dir}: nothing was saved to resume from"
    from rtdetr.convert.checkpoint import CheckpointError, read_checkpoint

    try:
        ckpt = read_checkpoint(last, mmap=True)  # the tensors stay on disk
        done, partial = int(ckpt["epoch"]), ckpt.get("partial")
        epoch = f"epoch {done}" if not partial else f"{partial['batches']} batches of epoch {done + 1}"
    except (CheckpointError, KeyError, TypeError, ValueError):
        epoch = "its last finished epoch"
    return f"{last} holds {epoch}; continue from there with: {how or f'rtdetr train --resume {out_dir}'}"


class Terminated(KeyboardInterrupt):
    """SIGTERM during training (a scheduler's preemption, ``docker stop``, ``kill``): the run stops as Ctrl-C
    stops it, saying what its ``last.pth`` holds, instead of dying without a word."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def worker_ignores_signals(worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``: SIGTERM or Ctrl-C's SIGINT sent to the whole process group
    (``pkill``, a scheduler, the terminal) leaves the workers to the main process, which stops the run (after the
    step, see :mod:`rtdetr.engine.interrupt`) and shuts them down (a worker killed first made it fail with
    "DataLoader worker ... is killed by signal"); a worker whose main process is gone exits by itself."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main thread; the previous
    handler comes back after. Elsewhere than the main thread (where handlers cannot be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
