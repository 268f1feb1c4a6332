"""Stopping a training run inside an epoch without losing it, and going on from there.

Ctrl-C (SIGINT) or SIGTERM during the training steps of an epoch asks the run to stop at the next optimizer-step
boundary (:class:`StopRequest`); the trainer then writes ``last.pth`` with the epoch's progress (batches done,
the epoch's loss sums, the random state) and stops. ``--resume`` skips the batches done (:class:`SkipSampler`:
the epoch's order is the same, the sampler being seeded per epoch) and goes on from the next one; with
``data.workers=0`` the resumed run is bit-identical to one never stopped (with workers, their augmentation draws
differ). A second signal stops at once, as before.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Sampler

from rtdetr.config import ConfigError, TrainConfig
from rtdetr.engine.distributed import rank0_flags
from rtdetr.engine.rundir import Terminated

__all__ = [
    "EpochTally",
    "SkipSampler",
    "StopRequest",
    "check_epoch_shape",
    "random_state",
    "restore_random_state",
    "set_random_state",
    "stop_or_save",
]


class StopRequest:
    """Within the block, the first SIGINT or SIGTERM sets :attr:`signum` (the run stops where it can save) and
    says so on stderr; a second one raises at once (KeyboardInterrupt, or :class:`Terminated` for SIGTERM). Does
    nothing when disabled or outside the main thread (where handlers cannot be set)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True, say: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.say = say
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if self.enabled:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            self.stop_now(signum)
        self.signum = signum
        if self.say:  # os.write: safe inside a signal handler, unlike logging or print
            what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            os.write(2, f"\n{what}: stopping after this step to save it (Ctrl-C again to stop at once)\n".encode())

    def stop_now(self, signum: int | None = None) -> None:
        """Raise what the signal would have raised without this block."""
        raise Terminated if (signum or self.signum) == signal.SIGTERM else KeyboardInterrupt


class SkipSampler(Sampler[int]):
    """``sampler``'s indices, less the first :attr:`skip` of the next pass only: a resumed epoch leaves out the
    images it had trained on (the same ones: the sampler is re-seeded at every epoch start)."""

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler, self.skip = sampler, 0

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.sampler), skip, None)


class EpochTally:
    """One epoch's running loss sums (device tensors, read back only when logged: on a GPU a read waits for the
    step), its batches and steps, and the run of non-finite losses."""

    TERMS = ("loss_vfl", "loss_mal", "loss_bbox", "loss_giou")

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.batches = 0  # loader batches taken
        self.count = 0  # steps with a finite loss
        self.skipped = 0
        self.streak = 0  # non-finite losses in a row

    def non_finite(self, limit: int) -> None:
        """A step skipped for a non-finite loss; RuntimeError once more than ``limit`` came in a row."""
        self.skipped += 1
        self.streak += 1
        if self.streak > limit:
            raise RuntimeError(
                f"{self.streak} consecutive non-finite losses: training diverged "
                "(lower the learning rate, turn off amp, or check the data)"
            )

    def add(self, loss: Tensor, losses: dict[str, Tensor], o2m: bool) -> None:
        """One step's total ``loss`` and its terms (with ``o2m``, the one-to-many branch's share, all layers)."""
        self.count, self.streak = self.count + 1, 0
        parts = {"loss": loss.detach(), **{k: losses[k].detach() for k in self.TERMS if k in losses}}
        if o2m:
            parts["loss_o2m"] = sum((v.detach() for k, v in losses.items() if "_o2m_" in k), torch.zeros(()))
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def mean_loss(self) -> float:
        return float(self.sums["loss"]) / max(self.count, 1)

    def row(self) -> dict[str, float]:
        """The epoch's mean of each term (``train_<term>``) and its skipped (non-finite) steps."""
        return {**{f"train_{k}": float(v) / max(self.count, 1) for k, v in self.sums.items()},
                "skipped_steps": float(self.skipped)}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "sums": {k: float(v) for k, v in self.sums.items()}, "count": self.count,
                "skipped": self.skipped}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = dict(state["sums"])
        self.batches, self.count, self.skipped = int(state["batches"]), int(state["count"]), int(state["skipped"])


def random_state(device: torch.device) -> dict[str, Any]:
    """The random generators a training step draws from: Python's, torch's CPU one and the device's."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_random_state(state: dict[str, Any], device: torch.device) -> None:
    """Put back what :func:`random_state` took."""
    version, internal, gauss = state["python"]  # a checkpoint's lists back to the tuples random wants
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def restore_random_state(partial: dict[str, Any], rank: int, world: int, device: torch.device) -> None:
    """Put back the random state ``partial`` saved for this process: under torchrun each process's own
    (``random_ranks``); a checkpoint that has only process 0's (``random``: one process, or an older run) restores it
    in a single process only, and under torchrun each process keeps its epoch seed."""
    ranks = partial.get("random_ranks")
    if ranks is not None and len(ranks) == world:
        set_random_state(ranks[rank], device)
    elif world == 1:
        set_random_state(partial["random"], device)


def stop_or_save(t: TrainConfig, used: float, saved_s: float, device: torch.device) -> tuple[bool, bool]:
    """At a step boundary, after ``used`` seconds of training (the last ``last.pth`` at ``saved_s``): whether
    ``t.time_budget_s`` is spent and whether a save is due (``t.save_every_s``), as process 0 sees them, on every
    process under torchrun. Each process's clock differs a little: one leaving the epoch alone left the others
    waiting in the gradient all-reduce, and the save gathers every process's random state."""
    budget_s, every_s = t.time_budget_s, t.save_every_s
    if budget_s is None and every_s is None:
        return False, False
    over = budget_s is not None and used >= budget_s
    due = every_s is not None and used - saved_s >= every_s
    over, due = rank0_flags([over, due], device)
    return over, due


def check_epoch_shape(path: str, ckpt: dict[str, Any], now: dict[str, int]) -> None:
    """ConfigError when ``ckpt`` stopped inside an epoch (``ckpt["partial"]``) under another ``batch_size``,
    ``accumulate`` or ``world`` (processes) than ``now``: its batch count would leave out other images than the
    ones it trained on, or split an optimizer step. Checkpoints that did not record them: the run config's."""
    partial = ckpt.get("partial")
    if partial is None:
        return
    saved = (ckpt.get("run_config") or {}).get("train") or {}
    was = {k: int(partial.get(k, saved.get(k, 1))) for k in ("batch_size", "accumulate", "world")}
    if was == now:
        return
    said = {"batch_size": "train.batch_size {}", "accumulate": "train.accumulate {}", "world": "{} processes"}
    diff = ", ".join(f"{said[k].format(was[k])} (now {now[k]})" for k in now if was[k] != now[k])
    keep = " ".join(f"train.{k}={was[k]}" for k in ("batch_size", "accumulate") if was[k] != now[k])
    epoch, fix = int(ckpt["epoch"]) + 1, keep or f"{was['world']} processes"
    raise ConfigError(
        f"{path} stopped {partial['batches']} batches into epoch {epoch} with {diff}: the rest of that epoch needs "
        f"the same to train on the images it has not seen. Resume with {fix}; they "
        f"can change once the epoch is done (resume with --epochs {epoch} first, then with the new settings)"
    )
