"""A training process killed with SIGKILL (no chance to clean up) loses at most the epoch it was in: the last
checkpoint stays loadable, ``metrics.csv`` agrees with it, and ``--resume`` finishes the run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rtdetr.convert.checkpoint import read_checkpoint
from rtdetr.data.synthetic import make_synthetic_coco

from .conftest import TINY

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

EPOCHS = 40  # far more than the test lets it run: every kill lands inside a running epoch


def _train(data: dict[str, Path], out: Path, epochs: int, *extra: str, group: bool = False) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "rtdetr.cli",
        "train",
        *TINY,
        "train.eval_interval=1000",  # eval only at the end: epochs stay short and alike
        *(e for e in extra if not e.startswith("-")),  # key=value settings come before the flags
        f"--data={data['train']}",
        f"--val={data['val']}",
        f"--output={out}",
        f"--epochs={epochs}",
        *(e for e in extra if e.startswith("-")),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=group
    )


def _wait_for_epoch(proc: subprocess.Popen, ckpt: Path, after: int, timeout: float = 120.0) -> int:
    """Block until ``ckpt`` records an epoch > ``after``; returns that epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"training exited early ({proc.returncode}):\n{proc.stdout.read() if proc.stdout else ''}"
            )
        if ckpt.is_file():
            try:
                epoch = int(read_checkpoint(ckpt)["epoch"])
            except Exception:  # being replaced right now: os.replace is atomic, so only a race on open
                epoch = -1
            if epoch > after:
                return epoch
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint after epoch {after} within {timeout} s")


def _csv_epochs(out: Path) -> list[int]:
    with (out / "metrics.csv").open() as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path: Path) -> None:
    data = make_synthetic_coco(tmp_path / "data", num_train=48, num_val=4, size=64, seed=3)
    out = tmp_path / "run"
    last = out / "last.pth"
    done = 0
    for delay in (0.3, 0.05):  # kill shortly after a checkpoint, then right after one (possibly while saving)
        extra = [f"--resume={last}"] if done else []
        proc = _train(data, out, EPOCHS, *extra)
        reached = _wait_for_epoch(proc, last, after=done)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        ckpt = read_checkpoint(last)  # loads: never a truncated file under the real name
        done = int(ckpt["epoch"])
        assert done >= reached
        assert set(ckpt) >= {"model", "optimizer", "scheduler", "epoch", "global_step", "run_config"}
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
        # rows of the epochs the checkpoint holds; at most one row ahead (killed between the two writes)
        assert _csv_epochs(out)[:done] == list(range(1, done + 1))
        assert len(_csv_epochs(out)) <= done + 1

    # resume and finish: only the interrupted epoch is redone
    proc = _train(data, out, done + 1, f"--resume={last}")
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    assert f"at epoch {done}" in log  # "resumed from ... at epoch N"
    final = read_checkpoint(last)
    assert int(final["epoch"]) == done + 1
    assert final["global_step"] == (done + 1) * 24  # 48 images / batch 2: no step repeated or skipped
    assert _csv_epochs(out) == list(range(1, done + 2))
    assert not list(out.glob(".*.tmp")), "stale temporary checkpoint files left behind"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a process's children from /proc")
@pytest.mark.parametrize(("signum", "code", "said"), [
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    # Ctrl-C reaching the workers is also test_interrupt.py's (in process, seconds); this launch takes 30 s
    pytest.param(signal.SIGINT, 130, "interrupted", marks=pytest.mark.slow),
])  # fmt: skip
def test_a_signal_to_the_process_group_saves_the_epoch(tmp_path: Path, signum: int, code: int, said: str) -> None:
    """``pkill``/a scheduler sends SIGTERM, the terminal's Ctrl-C SIGINT, to the training process and its
    DataLoader workers at once: the run failed with "DataLoader worker ... is killed by signal: Terminated" (exit
    1), and then lost the epoch it was in. Now the workers leave it to the main process, which finishes its step,
    saves how far into the epoch it got, says so, exits 143 (130) and leaves no process behind; ``--resume``
    trains the rest of that epoch only."""
    data = make_synthetic_coco(tmp_path / "data", num_train=48, num_val=4, size=64, seed=3)
    out = tmp_path / "run"
    proc = _train(data, out, EPOCHS, "data.workers=2", group=True)
    _wait_for_epoch(proc, out / "last.pth", after=0)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.time() + 30
    while not children.read_text().split() and time.time() < deadline:  # the next epoch's workers are up
        time.sleep(0.01)
    assert children.read_text().split(), "no DataLoader workers to signal"
    time.sleep(0.5)  # a few steps into the epoch
    os.killpg(proc.pid, signum)
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == code, log
    assert f"rtdetr train: {said}; " in log and "killed by signal" not in log, log
    ckpt = read_checkpoint(out / "last.pth")
    done, batches = int(ckpt["epoch"]), int(ckpt["partial"]["batches"])
    assert f"last.pth holds {batches} batches of epoch {done + 1}; continue from there" in log
    assert 0 < batches < 24 and ckpt["global_step"] == done * 24 + batches  # 48 images / batch 2: 24 an epoch
    deadline = time.time() + 20
    while time.time() < deadline:  # the workers end with their main process
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("processes of the run are still alive 20 s after it ended")

    proc = _train(data, out, done + 1, "data.workers=2", f"--resume={out / 'last.pth'}")
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    assert f"at {batches} batches into epoch {done + 1} (step {done * 24 + batches})" in log  # "resumed from ..."
    final = read_checkpoint(out / "last.pth")
    assert int(final["epoch"]) == done + 1 and "partial" not in final
    assert final["global_step"] == (done + 1) * 24  # the rest of the epoch: no batch repeated or skipped
    assert _csv_epochs(out) == list(range(1, done + 2))
