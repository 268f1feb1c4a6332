"""torchrun with 2 CPU processes (gloo) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtdetr.cli import main as cli_main
from rtdetr.convert import read_checkpoint
from tests.engine.conftest import TINY

# Same global batches in both runs: no augmentation, no denoising noise, BatchNorm on running statistics.
# AdamW with eps=1 makes each update linear in the gradient (like SGD), so rounding-level differences between the
# all-reduced and the single-process gradient stay rounding-level instead of flipping Adam's g/sqrt(v) signs.
EXACT = [
    *TINY,
    "model.decoder.num_denoising=0",
    "data.augment=false",
    "data.hflip=false",
    "train.freeze_bn_stats=true",
    "train.batch_size=4",
    "train.epochs=2",
    "train.ema=false",
    "train.eps=1.0",
    "train.lr=1.0",
    "train.backbone_lr=1.0",
    "train.warmup_iters=0",
    # fp32 on every machine: the torchrun processes see the real CPU, not the suite's pinned AVX2 one, and
    # train.amp's default is bf16 where the CPU has native bf16 (an AMX Xeon: DDP in bf16 against one process in fp32)
    "train.amp=false",
]


#: What torch's gloo teardown printed when a rank aborted at interpreter exit after its run had finished (SIGABRT:
#: a gloo worker thread released a Python-owned tensor during finalization). ``rtdetr``'s torchrun processes now end
#: without finalization (:func:`rtdetr.engine.distributed.exit_skipping_finalization`), so it must not appear.
TEARDOWN_ABORT = "terminate called without an active exception"


def _torchrun(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """``torchrun`` of ``rtdetr train`` with 2 CPU processes (launched once: a rank that aborts fails the test)."""
    proc = _launch(args, timeout)
    assert TEARDOWN_ABORT not in proc.stderr, proc.stderr[-3000:]
    return proc


def _launch(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "rtdetr.cli",
        "train",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_two_processes_match_one_process(tiny_data: dict, tmp_path: Path) -> None:
    common = [f"data.train={tiny_data['train']}", *EXACT]
    from rtdetr.convert import save_model
    from rtdetr.engine.trainer import Trainer
    from rtdetr.recipe import load_recipe

    start = Trainer(load_recipe(None, [*common, f"train.output_dir={tmp_path / 'init'}"]))
    save_model(start.model, tmp_path / "single" / "init.pth")  # the initial weights every run starts from
    assert cli_main(["train", *common, f"train.output_dir={tmp_path / 'single'}"]) == 0
    proc = _torchrun([*common, f"train.output_dir={tmp_path / 'ddp'}"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("outputs in ") == 1, proc.stdout  # the last line, once: each process printed its own
    a = read_checkpoint(tmp_path / "single" / "last.pth")
    b = read_checkpoint(tmp_path / "ddp" / "last.pth")
    assert a["global_step"] == b["global_step"] == 4
    init = read_checkpoint(tmp_path / "single" / "init.pth")["model"]
    moved = max((a["model"][k].float() - init[k].float()).abs().max().item() for k in init)
    worst = max((a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"])
    assert moved > 1e-3, "the weights barely moved: the comparison would prove nothing"
    assert worst < 1e-5, f"DDP weights differ from single-process weights by {worst} (moved {moved})"


@pytest.mark.slow
def test_rank_with_only_empty_images_does_not_hang(tmp_path: Path, tiny_data: dict) -> None:
    data = json.loads(Path(tiny_data["train"]).read_text())
    keep = data["images"][0]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == keep]  # 7 of 8 images empty
    ann = Path(tiny_data["train"]).parent.parent / "train" / "mostly_empty.json"  # beside its images
    ann.write_text(json.dumps(data))
    # global batch 2 = one image per rank: every step at least one rank sees no box at all
    args = [f"data.train={ann}", *TINY, "train.batch_size=2", "train.epochs=1", f"train.output_dir={tmp_path}"]
    proc = _torchrun(args, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert read_checkpoint(tmp_path / "last.pth")["global_step"] == 4


def test_a_torchrun_process_ends_without_finalization(tmp_path: Path) -> None:
    """A process that joined a group (under torchrun) leaves through ``os._exit`` with the command's exit code,
    its buffered stdout flushed and its log files closed first; the race this avoids (a gloo worker thread releasing
    a tensor during finalization: SIGABRT after a finished run, 5 of 80 launches of a small DDP script) cannot be
    forced, so this checks the path in a child process whose stdout is a pipe (block-buffered: lost without the
    flush), and the torchrun tests above fail on any abort. A process that joined no group returns from ``main``
    and finalizes as before: its atexit handler runs."""
    script = (
        "import atexit, logging, sys\n"
        "from rtdetr.cli import main\n"
        "from rtdetr.engine import distributed\n"
        "atexit.register(lambda: print('finalized'))\n"
        "distributed._joined = sys.argv[1] == 'joined'\n"
        "h = logging.FileHandler(sys.argv[2])\n"
        "logging.getLogger('rtdetr').addHandler(h)\n"
        "logging.getLogger('rtdetr').warning('from the run')\n"
        "print('before', flush=False)\n"
        "code = main(sys.argv[3:])\n"
        "print('main returned', code)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    for joined, argv, code in (
        ("joined", ["info"], 0),
        ("joined", ["info", str(tmp_path / "missing.pth")], 1),
        ("alone", ["info"], 0),
    ):
        log = tmp_path / f"{joined}{code}.log"
        cmd = [sys.executable, "-c", script, joined, str(log), *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == code, proc.stderr[-2000:]
        assert proc.stdout.startswith("before\n") and ("rtdetr_r18vd" in proc.stdout) == (code == 0), proc.stdout
        assert ("main returned" in proc.stdout) == ("finalized" in proc.stdout) == (joined == "alone"), proc.stdout
        assert "from the run" in log.read_text()


def test_device_names_are_checked(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A device this project does not run on, or a CUDA index past the machine's GPUs, is refused naming what
    there is (``--device tpu`` printed torch's list of 20 device types; ``cuda:7`` failed later, inside torch)."""
    import torch

    from rtdetr.engine.distributed import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("tpu", "mps", "gpu0"):
        with pytest.raises(ValueError, match=rf"device must be cpu, cuda, cuda:N or auto; got '{bad}'"):
            resolve_device(bad)
    assert cli_main(["predict", "rtdetr_r18vd", "x.jpg", "--device", "tpu"]) == 1
    assert "error: device must be cpu, cuda, cuda:N or auto; got 'tpu'" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"'cuda:7': this machine has 1 CUDA device \(cuda:0..cuda:0\)"):
        resolve_device("cuda:7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda' requested but CUDA is not available"):
        resolve_device("cuda")


def _two_processes(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from rtdetr.engine.distributed import all_objects, init_distributed, joined_a_group, rank0_flags

    # what torchrun sets for each process; init_distributed joins through them, as `rtdetr train` does
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    _, _, device = init_distributed("cpu")
    try:
        flags = rank0_flags([rank == 0, rank == 1], device)
        got = {"flags": flags, "objects": all_objects({"rank": rank}), "joined": joined_a_group()}
        Path(out, f"{rank}.json").write_text(json.dumps(got))
    finally:
        dist.destroy_process_group()


def test_process_0_decides_for_every_process(tmp_path: Path) -> None:
    """Two gloo processes that see a decision differently both take process 0's; every process's object
    reaches every process, in rank order. Each joined through ``init_distributed``, which records it (the CLI then
    ends the process without finalization)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free port: `make test` runs two test processes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_two_processes, args=(port, str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"{rank}.json").read_text())
        assert got == {"flags": [True, False], "objects": [{"rank": 0}, {"rank": 1}], "joined": True}, rank


def test_the_time_budget_and_periodic_saves_follow_process_0(
    tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun each process read its own clock at every step: near the time budget one could leave the
    epoch while another went on into the gradient all-reduce and waited there. The trainer now takes both
    decisions as process 0 broadcasts them (a stand-in broadcast here says: a save is due, then the time is up),
    and the save holds every process's random state (a stand-in gather of two)."""
    import torch

    from rtdetr.engine import interrupt, trainer
    from rtdetr.engine.trainer import Trainer
    from tests.engine.conftest import tiny_config

    decisions = iter([[False, True], [True, False]])
    monkeypatch.setattr(interrupt, "rank0_flags", lambda values, device: next(decisions))
    monkeypatch.setattr(trainer, "all_objects", lambda obj: [obj, {**obj, "torch": torch.zeros(3)}])
    saved: list[dict] = []
    real_save = trainer.atomic_save
    monkeypatch.setattr(trainer, "atomic_save", lambda ckpt, path: saved.append(ckpt) or real_save(ckpt, path))
    # locally neither is due: a budget of an hour, a save every hour
    tr = Trainer(
        tiny_config(tiny_data, tmp_path, "train.epochs=2", "train.time_budget_s=3600", "train.save_every_s=3600")
    )
    tr.fit()
    assert tr.out_of_time and tr.global_step == 1  # one step between the save and the stop
    partial = saved[0]["partial"]
    assert partial["batches"] == 0 and len(partial["random_ranks"]) == 2
    assert torch.equal(partial["random_ranks"][1]["torch"], torch.zeros(3))


def test_each_process_resumes_with_its_own_random_state() -> None:
    import random

    import torch

    from rtdetr.engine.interrupt import random_state, restore_random_state

    cpu = torch.device("cpu")
    states, draws = [], []
    for seed in (1, 2, 5):
        torch.manual_seed(seed)
        random.seed(seed)
        states.append(random_state(cpu))
        draws.append((torch.rand(3).tolist(), random.random()))
    partial = {"random": states[0], "random_ranks": states[:2]}
    for rank in (0, 1):
        restore_random_state(partial, rank, 2, cpu)
        assert (torch.rand(3).tolist(), random.random()) == (draws[rank]), rank
    old = {"random": states[0]}  # process 0's state only (a checkpoint written before every process's was kept)
    torch.manual_seed(5)
    random.seed(5)
    restore_random_state(old, 1, 2, cpu)  # under torchrun: not another process's state
    assert (torch.rand(3).tolist(), random.random()) == (draws[2])
    restore_random_state(old, 0, 1, cpu)  # alone: its own
    assert (torch.rand(3).tolist(), random.random()) == (draws[0])
