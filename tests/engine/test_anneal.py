from __future__ import annotations

import logging

import pytest
import torch

from rtdetr.config import TrainConfig
from rtdetr.engine.anneal import AnnealStart

CPU = torch.device("cpu")


def _found(**kw: object) -> TrainConfig:
    return TrainConfig(schedule="cosine", anneal_from="found", **kw)  # type: ignore[arg-type]


def _feed(anneal: AnnealStart, mean_giou: float, weight: float = 2.0) -> None:
    # a step's final-layer loss_giou is weight * mean(1 - GIoU) over the matched boxes
    anneal.observe({"loss_giou": torch.tensor(weight * (1.0 - mean_giou)), "loss_bbox": torch.tensor(9.0)})


def test_the_cosine_waits_for_the_boxes_to_find_the_objects() -> None:
    anneal = AnnealStart(_found(found_giou=0.5, log_interval=4), giou_weight=2.0)
    assert anneal.waiting and anneal.start is None
    for step, giou in enumerate([0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.7, 0.7, 0.7], start=1):
        _feed(anneal, giou)
        started = anneal.update(step, time_s=10.0 * step, device=CPU)
        # read at steps 4 (mean 0.25), 8 (mean 0.525 >= 0.5): the start is that step and its time
        assert started == (step == 8)
    assert anneal.start == (8, 80.0) and anneal.last_giou == pytest.approx(0.525)
    _feed(anneal, 0.0)
    assert not anneal.update(12, 120.0, CPU) and anneal.start == (8, 80.0)  # decided once
    # only at the interval, once per step (gradient accumulation calls it again at the same step), with data
    late = AnnealStart(_found(log_interval=4), giou_weight=2.0)
    _feed(late, 0.9)
    assert not late.update(3, 30.0, CPU) and late.waiting
    assert late.update(4, 40.0, CPU) and late.start == (4, 40.0)
    idle = AnnealStart(_found(log_interval=4), giou_weight=2.0)
    assert not idle.update(4, 40.0, CPU)  # nothing observed: nothing to read


def test_a_window_below_the_threshold_keeps_waiting_and_the_end_says_so(caplog: pytest.LogCaptureFixture) -> None:
    anneal = AnnealStart(_found(found_giou=0.5, log_interval=2), giou_weight=5.0)
    for step in range(1, 41):
        _feed(anneal, 0.498, weight=5.0)  # just under, with another weight: unweighted before comparing
        assert not anneal.update(step, float(step), CPU)
    assert anneal.waiting and anneal.last_giou == pytest.approx(0.498)
    with caplog.at_level(logging.WARNING, logger="rtdetr"):
        anneal.report_end()
    assert "stayed at its peak" in caplog.text and "(last 0.498)" in caplog.text  # not "0.50 (last 0.50)"


def test_a_start_mode_run_is_watched_without_moving_its_cosine(caplog: pytest.LogCaptureFixture) -> None:
    start = AnnealStart(TrainConfig(schedule="cosine", anneal_from="start", log_interval=1), giou_weight=2.0)
    _feed(start, 0.3)
    with caplog.at_level(logging.INFO, logger="rtdetr"):
        assert not start.update(1, 1.0, CPU)
        start.report_end()  # still on the plateau: said, without the held-LR clause
        assert "still on its first plateau" in caplog.text and "stayed at its peak" not in caplog.text
        _feed(start, 0.7)
        assert not start.update(2, 2.0, CPU)  # found, logged, but the cosine started at 0 as configured
    assert start.found == (2, 2.0) and start.start == (0, 0.0) and "found the objects at step 2" in caplog.text
    assert not start.watching


def test_start_mode_without_giou_and_state_round_trip() -> None:
    assert AnnealStart(TrainConfig(schedule="cosine", anneal_from="start"), 2.0).start == (0, 0.0)
    assert AnnealStart(TrainConfig(schedule="constant", anneal_from="found"), 2.0).start == (0, 0.0)  # no cosine
    assert AnnealStart(TrainConfig(anneal_from="auto"), 2.0).start == (0, 0.0)  # unresolved: as before
    assert AnnealStart(_found(), 0.0).start == (0, 0.0)  # no GIoU term to watch
    found = AnnealStart(_found(log_interval=1), 2.0)
    _feed(found, 0.8)
    found.update(7, 70.5, CPU)
    again = AnnealStart(_found(), 2.0)
    again.load_state_dict(found.state_dict())
    assert again.start == (7, 70.5) and again.found == (7, 70.5) and not again.waiting and not again.watching
    waiting = AnnealStart(_found(), 2.0)
    waiting.load_state_dict(AnnealStart(_found(), 2.0).state_dict())
    assert waiting.waiting
