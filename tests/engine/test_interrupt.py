"""Ctrl-C or SIGTERM inside an epoch: the run stops at the next optimizer step, ``last.pth`` holds the epoch's
progress, and ``--resume`` goes on from the next batch; with ``data.workers=0`` the resumed run equals one never
stopped, weights, step count and the epoch's logged losses alike."""

from __future__ import annotations

import csv
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from rtdetr.config import ConfigError
from rtdetr.convert import read_checkpoint
from rtdetr.engine.interrupt import EpochTally, SkipSampler, StopRequest
from rtdetr.engine.rundir import Terminated, interrupted_note
from rtdetr.engine.trainer import Trainer
from tests.engine.conftest import tiny_config


def _at_call(trainer: Trainer, call: int, action: Callable[[], None]) -> None:
    """Run ``action`` during the criterion's ``call``-th call (inside a training step)."""
    real, calls = trainer.criterion.forward, {"n": 0}

    def forward(out, targets):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == call:
            action()
        return real(out, targets)

    trainer.criterion.forward = forward  # type: ignore[method-assign]


def _signal_at_call(trainer: Trainer, call: int, signum: int = signal.SIGINT) -> None:
    """Send ``signum`` to this process during the criterion's ``call``-th call."""
    _at_call(trainer, call, lambda: os.kill(os.getpid(), signum))


def _killed() -> None:
    raise MemoryError("killed")  # stands in for SIGKILL or the OOM killer: no handler, no save


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


Straight = Callable[..., tuple[dict, list]]


@pytest.fixture(scope="module")
def straight(tiny_data: dict, tmp_path_factory: pytest.TempPathFactory) -> Straight:
    """``straight(*settings)``: the weights and ``metrics.csv`` rows of a run never stopped (each made once)."""
    runs: dict[tuple[str, ...], tuple[dict, list]] = {}

    def run(*extra: str) -> tuple[dict, list]:
        if extra not in runs:
            out = tmp_path_factory.mktemp("straight")
            trainer = Trainer(tiny_config(tiny_data, out, *extra))
            trainer.fit()
            runs[extra] = trainer.model.state_dict(), _rows(out)
        return runs[extra]

    return run


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_stop_inside_an_epoch_resumes_exactly(
    tiny_data: dict, tmp_path: Path, straight: Straight, accumulate: int
) -> None:
    extra = ["train.epochs=2", f"train.accumulate={accumulate}", "train.batch_size=1"]  # 8 batches an epoch
    a, rows_a = straight(*extra)
    cut = Trainer(tiny_config(tiny_data, tmp_path / "b", *extra))
    _signal_at_call(cut, 8 + 3)  # inside batch 3 of epoch 2 (index 2): it stops before batch 4 (index 4 with 2)
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    ckpt = read_checkpoint(tmp_path / "b" / "last.pth")
    batches = 3 if accumulate == 1 else 4  # never between two accumulated batches
    assert ckpt["epoch"] == 1 and ckpt["partial"]["batches"] == batches
    assert ckpt["global_step"] == (8 + batches) // accumulate
    note = interrupted_note(tmp_path / "b")
    assert note.startswith(f"{tmp_path / 'b' / 'last.pth'} holds {batches} batches of epoch 2; continue from there")
    assert [r["epoch"] for r in _rows(tmp_path / "b")] == ["1"]

    resumed = Trainer(tiny_config(tiny_data, tmp_path / "b", *extra, f"resume={tmp_path / 'b' / 'last.pth'}"))
    assert resumed.start_epoch == 1
    resumed.fit()
    b = resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run diverged from the one never stopped"
    assert resumed.global_step == 16 // accumulate
    assert "partial" not in read_checkpoint(tmp_path / "b" / "last.pth")  # the epoch finished: a plain one again
    rows_b = _rows(tmp_path / "b")
    assert [r["epoch"] for r in rows_b] == ["1", "2"]
    for key in ("train_loss", "train_loss_vfl", "skipped_steps", "AP"):  # epoch 2's means cover all its batches
        assert float(rows_b[1][key]) == pytest.approx(float(rows_a[1][key]), rel=1e-6), key


def test_ctrl_c_while_evaluating_keeps_the_epoch_trained(tiny_data: dict, tmp_path: Path, straight: Straight) -> None:
    """Ctrl-C during the end-of-epoch evaluation lost the epoch it had just trained (``last.pth`` is written
    after the evaluation): now ``last.pth`` holds the whole epoch's batches, and resume evaluates and goes on."""
    extra = ["train.epochs=2", "train.accumulate=1", "train.batch_size=1"]
    a, rows_a = straight(*extra)
    cut = Trainer(tiny_config(tiny_data, tmp_path / "b", *extra))

    def evaluate() -> None:
        raise KeyboardInterrupt

    cut.evaluate = evaluate  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    ckpt = read_checkpoint(tmp_path / "b" / "last.pth")
    assert ckpt["epoch"] == 0 and ckpt["partial"]["batches"] == 8 and ckpt["global_step"] == 8
    resumed = Trainer(tiny_config(tiny_data, tmp_path / "b", *extra, f"resume={tmp_path / 'b' / 'last.pth'}"))
    resumed.fit()
    b = resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and resumed.global_step == 16
    rows_b = _rows(tmp_path / "b")
    assert [r["epoch"] for r in rows_b] == ["1", "2"]
    assert [float(r["train_loss"]) for r in rows_b] == pytest.approx([float(r["train_loss"]) for r in rows_a])


def test_a_run_killed_without_warning_goes_on_from_its_last_periodic_save(
    tiny_data: dict, tmp_path: Path, straight: Straight
) -> None:
    """``save_every_s`` writes ``last.pth`` inside the epoch (here before every step; at the default 30 min, not
    in these short epochs): a run that dies without a word (an exception standing in for SIGKILL or the OOM
    killer) resumes from that save, and ends equal to a run never stopped."""
    extra = ["train.epochs=2"]  # 4 batches an epoch
    for every, held in (("1e-9", {"epoch": 1, "batches": 2}), ("1800", {"epoch": 1, "batches": None})):
        run = tmp_path / f"every{every}"
        crash = Trainer(tiny_config(tiny_data, run, *extra, f"train.save_every_s={every}"))
        _at_call(crash, 4 + 3, _killed)  # inside batch 3 of epoch 2
        with pytest.raises(MemoryError):
            crash.fit()
        ckpt = read_checkpoint(run / "last.pth")
        assert {"epoch": ckpt["epoch"], "batches": (ckpt.get("partial") or {}).get("batches")} == held, every
    run = tmp_path / "every1e-9"
    resumed = Trainer(tiny_config(tiny_data, run, *extra, f"resume={run / 'last.pth'}"))
    resumed.fit()
    a, b = straight(*extra)[0], resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and resumed.global_step == 8


def test_sigterm_stops_as_terminated_and_a_second_signal_at_once(tiny_data: dict, tmp_path: Path) -> None:
    """SIGTERM saves the epoch's progress and raises :class:`Terminated` (the CLI exits 143); inside the block a
    second signal raises at once; the handlers are the caller's again afterwards."""
    tr = Trainer(tiny_config(tiny_data, tmp_path / "t", "train.epochs=1"))
    _signal_at_call(tr, 2, signal.SIGTERM)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        tr.fit()
    assert read_checkpoint(tmp_path / "t" / "last.pth")["partial"]["batches"] == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with pytest.raises(KeyboardInterrupt), StopRequest(say=False) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT  # the first one only asks
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the second signal did not stop at once")


def test_skip_sampler_and_tally() -> None:
    s = SkipSampler(range(6))  # type: ignore[arg-type]
    s.skip = 4
    assert list(s) == [4, 5] and list(s) == list(range(6)) and len(s) == 6  # the skip holds for one pass
    tally = EpochTally()
    tally.add(torch.tensor(3.0), {"loss_vfl": torch.tensor(1.0), "loss_vfl_o2m_0": torch.tensor(0.5)}, o2m=True)
    tally.non_finite(limit=2)
    again = EpochTally()
    again.load_state_dict(tally.state_dict())
    again.add(torch.tensor(1.0), {"loss_vfl": torch.tensor(3.0)}, o2m=False)
    assert again.row() == {"train_loss": 2.0, "train_loss_vfl": 2.0, "train_loss_o2m": 0.25, "skipped_steps": 1.0}
    with pytest.raises(RuntimeError, match="3 consecutive non-finite losses"):
        for _ in range(3):
            again.non_finite(limit=2)
    apart = EpochTally()
    for _ in range(3):  # a finite step between two non-finite ones: never two in a row
        apart.non_finite(limit=1)
        apart.add(torch.tensor(1.0), {}, o2m=False)
    assert apart.skipped == 3 and apart.streak == 0


def test_ctrl_c_reaching_the_loader_workers_leaves_the_epoch_to_the_main_process(
    tiny_data: dict, tmp_path: Path
) -> None:
    """The terminal's Ctrl-C reaches the DataLoader workers too: a worker that died of it left the main process,
    still finishing its step, waiting for a batch that never came ("DataLoader worker exited unexpectedly").
    The workers ignore it: here they get SIGINT mid-epoch (the main process not) and the epoch runs to its end."""
    import multiprocessing

    tr = Trainer(tiny_config(tiny_data, tmp_path / "w", "train.epochs=1", "data.workers=2", "train.batch_size=1"))
    real, calls = tr.criterion.forward, {"n": 0}

    def forward(out, targets):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            workers = multiprocessing.active_children()
            assert workers, "no DataLoader workers to signal"
            for w in workers:
                os.kill(w.pid, signal.SIGINT)  # type: ignore[arg-type]
        return real(out, targets)

    tr.criterion.forward = forward  # type: ignore[method-assign]
    tr.fit()
    assert tr.global_step == 8 and calls["n"] == 8


def test_python_api_says_how_to_resume_and_resumes(
    tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``RTDETR.train()`` interrupted says what ``last.pth`` holds and the call that goes on; ``train(resume=)``
    continues that run in its own folder (no new ``run2``) with its own settings, and loads the best weights."""
    import yaml

    from rtdetr import RTDETR
    from tests.engine.conftest import TINY, TINY_MODEL

    settings = {
        k.split("=")[0].split(".", 1)[1]: yaml.safe_load(k.split("=")[1])
        for k in TINY
        if k.startswith(("train.", "data.w"))
    }
    settings.update(batch_size=1, progress=False)
    real = Trainer.train_one_epoch

    def one_epoch(self: Trainer, epoch: int) -> dict:
        if epoch == 1 and self.partial is None:
            _signal_at_call(self, 3)  # inside the third batch of epoch 2
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", one_epoch)
    det = RTDETR("rtdetr_r18vd", num_classes=4, **TINY_MODEL)
    with pytest.raises(KeyboardInterrupt) as e:
        det.train(
            tiny_data["train"], val=tiny_data["val"], epochs=2, output=tmp_path / "run", image_size=64, **settings
        )
    assert f"last.pth holds 3 batches of epoch 2; continue from there with: .train(resume='{tmp_path / 'run'}')" in str(
        e.value
    )
    again = RTDETR("rtdetr_r18vd")
    result = again.train(resume=tmp_path / "run")
    assert again.num_classes == 4 and again.checkpoint == tmp_path / "run" / "best.pth"
    assert result["output_dir"] == str(tmp_path / "run") and not (tmp_path / "run2").exists()
    assert read_checkpoint(tmp_path / "run" / "last.pth")["global_step"] == 16
    assert [r["epoch"] for r in _rows(tmp_path / "run")] == ["1", "2"]


def test_a_partial_epoch_resumes_only_with_the_batches_it_was_cut_into(tiny_data: dict, tmp_path: Path) -> None:
    """Resuming inside an epoch under another batch size left out ``batches x new size`` images (some never
    trained on, or some twice), and another ``accumulate`` split a step: both are refused, naming the checkpoint,
    the setting and how to go on; the same settings still resume."""
    extra = ["train.epochs=2", "train.accumulate=1", "train.batch_size=2"]  # 4 batches an epoch
    run = tmp_path / "b"
    cut = Trainer(tiny_config(tiny_data, run, *extra))
    _signal_at_call(cut, 4 + 3)
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    last = run / "last.pth"
    partial = read_checkpoint(last)["partial"]
    assert [partial[k] for k in ("batch_size", "accumulate", "world")] == [2, 1, 1]
    for change, said, fix in (
        ("train.batch_size=1", "train.batch_size 2 (now 1)", "train.batch_size=2"),
        ("train.accumulate=2", "train.accumulate 1 (now 2)", "train.accumulate=1"),
    ):
        with pytest.raises(ConfigError) as err:
            Trainer(tiny_config(tiny_data, run, *extra, change, f"resume={last}"))
        msg = str(err.value)
        assert msg.startswith(f"{last} stopped 3 batches into epoch 2 with {said}"), msg
        assert f"Resume with {fix};" in msg and "--epochs 2" in msg
    ckpt = read_checkpoint(last)  # a checkpoint from before the settings were recorded: the run config's
    for key in ("batch_size", "accumulate", "world"):
        del ckpt["partial"][key]
    torch.save(ckpt, tmp_path / "older.pth")
    with pytest.raises(ConfigError, match=r"train.batch_size 2 \(now 1\)"):
        Trainer(tiny_config(tiny_data, run, *extra, "train.batch_size=1", f"resume={tmp_path / 'older.pth'}"))
    resumed = Trainer(tiny_config(tiny_data, run, *extra, f"resume={tmp_path / 'older.pth'}"))
    assert resumed.start_epoch == 1 and resumed.partial is not None and resumed.partial["batches"] == 3
