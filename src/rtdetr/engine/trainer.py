"""The training loop: one :class:`Trainer` for single-process and torchrun (DDP) runs.

Per optimizer step: forward (autocast when ``amp``) -> criterion in fp32 -> collective finiteness check (a
non-finite loss skips the step on every process) -> backward -> clip -> step -> LR schedule -> EMA. Per epoch:
evaluate the EMA weights, write ``last.pth`` (and ``best.pth``) atomically, log CSV/TensorBoard/PNG.

Resume is exact: the RNG is re-seeded from (seed, rank, epoch) at every epoch start, and the checkpoint holds
model, EMA, optimizer, scheduler, scaler, step, where the LR cosine started (:mod:`rtdetr.engine.anneal`) and
best metric. Ctrl-C or SIGTERM inside an epoch saves its progress at the next step (:mod:`rtdetr.engine.interrupt`)
and resume goes on from there.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from rtdetr.config import ConfigError, RunConfig, to_dict
from rtdetr.convert.checkpoint import atomic_save, load_state_dict_into, read_checkpoint, remove_stale_saves
from rtdetr.data import BatchCollator, DetectionDataset, load_cover
from rtdetr.data.detect import load_run_sets
from rtdetr.data.mix import MixAugment
from rtdetr.data.records import DatasetIndex
from rtdetr.data.transforms import build_train_transforms, build_val_transforms, default_scales
from rtdetr.defaults import resolve_defaults
from rtdetr.engine import interrupt
from rtdetr.engine import logger as runlog
from rtdetr.engine.anneal import AnnealStart
from rtdetr.engine.distributed import all_objects, barrier, cleanup, init_distributed, rank0_decides
from rtdetr.engine.ema import ModelEMA
from rtdetr.engine.evaluator import CocoEvaluator, evaluate_model, ground_truth_for
from rtdetr.engine.hardware import loader_workers, training_amp, training_autocast
from rtdetr.engine.interrupt import EpochTally, SkipSampler, StopRequest, random_state
from rtdetr.engine.optim import build_optimizer, describe_schedule, effective_warmups, expected_steps, lr_factor
from rtdetr.engine.rundir import best_checkpoint, finished_run, fresh_output_dir, worker_ignores_signals
from rtdetr.engine.warmstart import warm_start
from rtdetr.loss import RTDETRCriterion
from rtdetr.loss.criterion import to_float32
from rtdetr.models import build_model
from rtdetr.models.rtdetr import RTDETR
from rtdetr.options import size_text

__all__ = ["Trainer"]

log = logging.getLogger("rtdetr")


class Trainer:
    """Build everything a run needs from a :class:`RunConfig` and train with :meth:`fit`."""

    def __init__(
        self, cfg: RunConfig, train_index: DatasetIndex | None = None, val_index: DatasetIndex | None = None
    ) -> None:
        self.rank, self.world, self.device = init_distributed(cfg.train.device)
        self.main = self.rank == 0
        if not cfg.resume and not cfg.train.exist_ok:  # never overwrite an earlier run
            fresh = str(fresh_output_dir(Path(cfg.train.output_dir)))
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output_dir=fresh))
        barrier()  # every rank has chosen the folder before the first one creates it
        t = cfg.train
        self.out_dir = Path(t.output_dir)
        with runlog.held_log_records(self.main) as held:  # its warnings go to the run's log, once there is one
            train_index, val_index = load_run_sets(cfg.data, train_index, val_index)
        # the run folder appears only once the data has parsed: a bad path or file leaves no empty run behind
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            runlog.setup_logging(self.out_dir / "log.txt", held)
            remove_stale_saves(self.out_dir)  # left by a process killed while saving
            log.info("run folder: %s", self.out_dir.resolve())

        for name, idx in (("train", train_index), ("val", val_index)):
            if idx is not None and self.main:
                runlog.log_index(name, idx)
        self.train_index, self.val_index = train_index, val_index

        model_cfg = cfg.model
        if model_cfg.num_classes != train_index.num_classes:
            model_cfg = dataclasses.replace(model_cfg, num_classes=train_index.num_classes)
        cfg, why = resolve_defaults(
            dataclasses.replace(cfg, model=model_cfg), len(train_index.records), train_index.num_boxes()
        )
        self.cfg, t = cfg, cfg.train
        if self.main:
            log.info("%s", why)
        assert t.batch_size is not None and t.lr is not None, "resolve_defaults sets batch_size and lr"
        if t.batch_size % self.world:
            raise ConfigError(f"train.batch_size {t.batch_size} is not divisible by {self.world} processes")

        torch.manual_seed(t.seed)  # identical initial weights on every process
        self.model: RTDETR = build_model(model_cfg)
        for level, message in warm_start(self.model, cfg):
            if self.main:
                log.log(level, "%s", message)
        self.model.to(self.device)
        self.model.decoder.num_o2m_queries = t.o2m_queries
        if t.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.net: nn.Module = self.model
        if self.world > 1:
            if t.sync_bn and self.device.type == "cuda":
                self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
            elif t.sync_bn and self.main:
                log.warning("sync_bn needs CUDA; BatchNorm statistics stay per process on %s", self.device)
            self.net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

        self.criterion = RTDETRCriterion(model_cfg.num_classes, cls_loss=str(t.cls_loss), o2m_repeat=t.o2m_repeat)
        self.criterion.to(self.device)
        self.optimizer = build_optimizer(self.net, t)
        self.amp_dtype = training_amp(t.amp, t.amp_dtype, self.device, self.main)  # None: fp32
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
        self.stop_epoch = t.epochs - max(t.no_aug_epochs, math.ceil((t.no_aug_fraction or 0.0) * t.epochs))
        d = cfg.data
        mosaic, mixup = d.mosaic or 0.0, d.mixup or 0.0
        mixing = max(mosaic, mixup, d.copy_paste) > 0
        mix = MixAugment(mosaic, mixup, d.copy_paste, d.mosaic_scale) if mixing else None
        cover = load_cover(size, d.shrink_above)
        self.train_set = DetectionDataset(
            train_index, build_train_transforms(size, self.stop_epoch, bool(d.augment), d.hflip), mix, cover
        )
        scales = default_scales(size) if cfg.data.multi_scale else None
        self.collate = BatchCollator(scales, self.stop_epoch)
        self.sampler: DistributedSampler | RandomSampler
        self.generator = torch.Generator()
        if self.world > 1:
            self.sampler = DistributedSampler(self.train_set, shuffle=True, seed=t.seed, drop_last=True)
        else:
            self.sampler = RandomSampler(self.train_set, generator=self.generator)
        self.skipper = SkipSampler(self.sampler)  # a run resumed inside an epoch leaves out the batches done
        self.epoch_shape = {"batch_size": t.batch_size, "accumulate": t.accumulate, "world": self.world}
        per_rank, workers = t.batch_size // self.world, loader_workers(cfg.data.workers, self.world)
        self.train_loader = DataLoader(self.train_set, per_rank, sampler=self.skipper, collate_fn=self.collate,
                                       num_workers=workers, drop_last=len(self.train_set) >= t.batch_size,
                                       pin_memory=self.device.type == "cuda", worker_init_fn=worker_ignores_signals,
                                       )  # fmt: skip
        self.iters_per_epoch = max(1, len(self.train_loader) // t.accumulate)
        if t.max_iters_per_epoch:
            self.iters_per_epoch = min(self.iters_per_epoch, t.max_iters_per_epoch)
        self.train_time_s = 0.0  # seconds of training so far (read by the LR schedule with schedule_over: time)
        self.saved_s = 0.0  # train_time_s at the last save of last.pth
        self._segment_start: float | None = None  # wall time the running training segment began
        self.expected_steps: int | None = None  # steps the time budget holds (schedule_over: time), once measured
        self.anneal = AnnealStart(t, self.criterion.weight_dict.get("loss_giou", 0.0))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(
                step, t, self.iters_per_epoch, self.time_used(), self.expected_steps, self.anneal.start
            ),
        )
        ema_warmup = effective_warmups(t, self.iters_per_epoch)[1]
        self.ema = ModelEMA(self.model, t.ema_ramp[0], ema_warmup) if t.ema else None
        if self.main:
            ms, (plan, short) = self.collate.scales, describe_schedule(t, self.iters_per_epoch, self.optimizer)
            multi = f" (multi-scale {size_text(min(ms))} to {size_text(max(ms))})" if ms else ""
            log.info("%s at %s%s: %s", cfg.model.name, size_text(size), multi, plan)
            if short:
                log.warning("%s", short)

        self.val_loader: DataLoader | None = None
        self.evaluator: CocoEvaluator | None = None
        if val_index is not None:
            val_set = DetectionDataset(val_index, build_val_transforms(size), load_cover=cover)
            self.val_loader = DataLoader(val_set, per_rank, collate_fn=BatchCollator(), num_workers=workers,
                                         worker_init_fn=worker_ignores_signals)  # fmt: skip
            cat_ids = val_index.category_ids or list(range(1, val_index.num_classes + 1))
            self.evaluator = CocoEvaluator(ground_truth_for(val_index)[0], label_to_category=cat_ids)

        self.start_epoch, self.global_step = 0, 0
        self.partial: dict[str, Any] | None = None  # resumed inside an epoch: how far it went
        self.tally = EpochTally()  # the running epoch's losses and batches
        self.out_of_time = False
        self.next_curve_s = t.eval_every_s
        self._curve_step = -1
        self.best_ap, self.best_epoch, self.bad_evals = -1.0, -1, 0
        self.logger = runlog.RunLogger(self.out_dir, enabled=self.main)
        if cfg.resume:
            self._resume(cfg.resume)
        if self.main:
            import yaml

            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(self.cfg), sort_keys=False))

    # ---------------------------------------------------------------------------------------------- set-up
    def _resume(self, path: str) -> None:
        ckpt = read_checkpoint(path)
        for key in ("model", "optimizer", "epoch"):
            if key not in ckpt:
                raise ConfigError(f"{path}: not a training checkpoint (no '{key}'); use init_from to fine-tune")
        load_state_dict_into(self.model, ckpt["model"], strict=True, origin=path)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        self.start_epoch, self.global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        self.train_time_s, self.partial = float(ckpt.get("train_time_s", 0.0)), ckpt.get("partial")
        interrupt.check_epoch_shape(path, ckpt, self.epoch_shape)  # a partial epoch goes on only with the same batches
        self.anneal.load_state_dict(ckpt.get("anneal") or {})
        best = ckpt.get("best", {})
        self.best_ap, self.best_epoch = float(best.get("ap", -1.0)), int(best.get("epoch", -1))
        self.bad_evals = int(best.get("bad_evals", 0))
        self.logger.load_existing(self.start_epoch, self.global_step)
        if every := self.cfg.train.eval_every_s:  # the next AP-vs-time mark after the time trained, not one at once
            self.next_curve_s = (math.floor(self.train_time_s / every) + 1) * every
        if self.main:
            at = f"{self.partial['batches']} batches into epoch {self.start_epoch + 1}" if self.partial else None
            log.info("resumed from %s at %s (step %d)", path, at or f"epoch {self.start_epoch}", self.global_step)

    def time_used(self) -> float:
        """Seconds of training so far (evaluations and checkpoints not counted)."""
        running = time.time() - self._segment_start if self._segment_start is not None else 0.0
        return self.train_time_s + running

    def augment_off(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` trains without strong augmentation and multi-scale: one of the last
        ``no_aug_epochs`` (or ``no_aug_fraction`` of the epochs) or, with ``schedule_over: time``, once the last
        ``no_aug_fraction`` of the budget began."""
        t = self.cfg.train
        if t.schedule_over == "time" and t.time_budget_s:
            tail = t.no_aug_fraction or 0.0
            return tail > 0 and self.train_time_s >= (1.0 - tail) * t.time_budget_s
        return epoch >= self.stop_epoch

    def _seed_epoch(self, epoch: int) -> None:
        seed = self.cfg.train.seed + 1000 * epoch + self.rank
        random.seed(seed)
        torch.manual_seed(seed)
        self.generator.manual_seed(self.cfg.train.seed + epoch)
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(epoch)
        off = self.augment_off(epoch)
        self.train_set.set_epoch(epoch, off)
        self.collate.set_epoch(epoch, off)

    # ------------------------------------------------------------------------------------------- training
    def _train_mode(self) -> None:
        self.net.train()
        if self.cfg.train.freeze_bn_stats:
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        t = self.cfg.train
        self._train_mode()
        self.tally, (partial, self.partial) = EpochTally(), (self.partial, None)
        if partial is not None:  # resumed inside this epoch: the batches done left out, the random state back
            self.tally.load_state_dict(partial)
        first = self.tally.batches
        self.skipper.skip = first * int(self.train_loader.batch_size or 1)
        it = iter(self.train_loader)
        if partial is not None:  # after iter(), which draws a worker seed
            interrupt.restore_random_state(partial, self.rank, self.world, self.device)
        total = min(len(self.train_loader), self.iters_per_epoch * t.accumulate)
        desc = runlog.epoch_desc(epoch + 1, t.epochs, self.expected_steps, self.iters_per_epoch)
        bar = runlog.progress_bar(total, desc, self.main and t.progress, first)
        self.optimizer.zero_grad(set_to_none=True)
        self._segment_start = time.time()
        with StopRequest(enabled=self.world == 1, say=self.main) as stop:
            for i in range(first, total):
                over, due = interrupt.stop_or_save(t, self.time_used(), self.saved_s, self.device)
                if over:
                    self.out_of_time = True
                    break
                if (stop.signum is not None or due) and i % t.accumulate == 0:  # between optimizer steps
                    self._save_partial(epoch)
                    if stop.signum is not None:
                        stop.stop_now()
                self._train_step(next(it), epoch, i)
                if bar is not None:
                    bar.update(1)
                    if self.tally.count and (self.global_step % t.log_interval == 0 or self.tally.count == 1):
                        lr = self.optimizer.param_groups[0]["lr"]
                        bar.set_postfix(loss=f"{self.tally.mean_loss():.3f}", lr=f"{lr:.2e}", refresh=False)
                if self._curve_due():
                    self._pause()
                    self.curve_point(epoch)
                    self._train_mode()
                    self._segment_start = time.time()
        if bar is not None:
            bar.close()
        self._pause()
        return self.tally.row()

    def _train_step(self, batch: tuple, epoch: int, i: int) -> None:
        """Forward, loss, backward (and the optimizer step every ``accumulate`` batches) on batch ``i``."""
        t, tally = self.cfg.train, self.tally
        images, targets = batch
        tally.batches += 1
        images = images.to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device) for k, v in tg.items()} for tg in targets]
        if t.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with training_autocast(self.device, self.amp_dtype):
            out = self.net(images, targets)
        try:
            losses = self.criterion(to_float32(out), targets)
            loss = sum(losses.values())
            finite = bool(torch.isfinite(loss))
        except FloatingPointError:
            losses, loss, finite = {}, torch.zeros((), device=self.device), False
        if self.world > 1:
            flag = torch.tensor([1.0 if finite else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = bool(flag.item() > 0)
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            if self.main:
                log.warning("non-finite loss at epoch %d iter %d: step skipped (%d in a row)", epoch + 1, i,
                            tally.streak + 1)  # fmt: skip
            tally.non_finite(t.max_nan_steps)
            return
        self.scaler.scale(loss / t.accumulate).backward()
        self.anneal.observe(losses)
        if (i + 1) % t.accumulate == 0:
            self._optimizer_step()
            self.anneal.update(self.global_step, self.time_used(), self.device)
        tally.add(loss, losses, bool(t.o2m_queries))
        if self.main and self.global_step % t.log_interval == 0:
            self.logger.scalar("train/loss", float(loss.detach()), self.global_step)

    def _save_partial(self, epoch: int, every_process: bool = True) -> None:
        """``last.pth`` holding epoch ``epoch`` (0-based) as far as it went: a stop asked for inside it, or
        ``save_every_s`` passed; with ``every_process`` (all of them call it) every process's random state."""
        self.saved_s = self.time_used()
        states = all_objects(random_state(self.device)) if every_process else [random_state(self.device)]
        if self.main:
            partial = {**self.tally.state_dict(), "random": states[0], **self.epoch_shape}
            partial.update({"random_ranks": states} if len(states) > 1 else {})
            atomic_save({**self.checkpoint(epoch), "partial": partial}, self.out_dir / "last.pth")
            log.info("saved %s: epoch %d up to batch %d", self.out_dir / "last.pth", epoch + 1, self.tally.batches)

    def _pause(self) -> None:
        """End the running training segment: its time joins :attr:`train_time_s`."""
        if self._segment_start is not None:
            self.train_time_s += time.time() - self._segment_start
            self._segment_start = None

    def _curve_due(self) -> bool:
        """Whether training time has passed the next ``eval_every_s`` mark (decided by rank 0 for every rank)."""
        if self.next_curve_s is None or self.val_loader is None:
            return False
        return rank0_decides(self.time_used() >= self.next_curve_s, self.device)

    def curve_point(self, epoch: int, result: dict[str, Any] | None = None) -> None:
        """Evaluate now (unless ``result`` is that evaluation) and append AP/AP50 at this training time to
        ``curve.csv``; the next mark is ``eval_every_s`` later."""
        t = self.cfg.train
        if result is None:
            result = self.evaluate()
        if t.eval_every_s is not None:
            while self.next_curve_s is not None and self.next_curve_s <= self.train_time_s:
                self.next_curve_s += t.eval_every_s
        if result is None or not self.main or self._curve_step == self.global_step:
            return  # (the end of the run on a mark: that point is logged already)
        self._curve_step = self.global_step
        stats = result["stats"]
        self.logger.curve({"train_time_s": round(self.train_time_s, 1), "step": self.global_step,
                           "epoch": epoch + 1, "AP": stats["AP"], "AP50": stats["AP50"]})  # fmt: skip
        log.info("at %.0f s of training (step %d): AP=%.4f AP50=%.4f", self.train_time_s, self.global_step,
                 stats["AP"], stats["AP50"])  # fmt: skip

    def _optimizer_step(self) -> None:
        t = self.cfg.train
        if t.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), t.clip_grad, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.net)
        self.global_step += 1
        steps = expected_steps(t, self.global_step, self.time_used())  # schedule_over: time
        if steps is not None and self.expected_steps is None and self.main:
            log.info("time budget: about %d optimizer steps at this pace; lr warm-up %d steps", steps,
                     effective_warmups(t, self.iters_per_epoch, steps)[0])  # fmt: skip
        self.expected_steps = steps or self.expected_steps

    # ----------------------------------------------------------------------------------------- evaluation
    def eval_model(self) -> nn.Module:
        """The weights evaluated and exported: the EMA if enabled."""
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self) -> dict[str, Any] | None:
        if self.val_loader is None or self.evaluator is None:
            return None
        result = evaluate_model(self.eval_model(), self.val_loader, self.evaluator, self.device,
                                self.cfg.train.eval_decoder_depth, max_det=self.cfg.model.decoder.num_queries,
                                ) if self.main else None  # fmt: skip
        barrier()
        return result

    # ----------------------------------------------------------------------------------------- checkpoints
    def checkpoint(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": epoch,
            "global_step": self.global_step,
            "train_time_s": self.time_used(),  # (inside an epoch, its running part too)
            "anneal": self.anneal.state_dict(),
            "best": {"ap": self.best_ap, "epoch": self.best_epoch, "bad_evals": self.bad_evals},
            "model_config": to_dict(self.cfg.model),
            "run_config": to_dict(self.cfg),
            "class_names": list(self.train_index.class_names),
            "category_ids": list(self.train_index.category_ids or []),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self) -> dict[str, Any]:
        """Train from ``start_epoch`` to ``epochs``; returns the best/last metrics and the output folder."""
        t = self.cfg.train
        last_eval: dict[str, Any] | None = None
        done, until = self.start_epoch, t.epochs
        why = finished_run(t.epochs, t.time_budget_s, done, self.train_time_s) if self.cfg.resume else None
        if why is not None:  # resuming a finished run: said, instead of an empty epoch and the same evaluation again
            until = done
            if self.main:
                log.warning("%s: nothing to resume, %s", self.cfg.resume, why)
        run_t0, self.saved_s = time.time(), self.train_time_s
        try:
            for epoch in range(self.start_epoch, until):
                self._seed_epoch(epoch)
                t0 = time.time()
                stats = self.train_one_epoch(epoch)
                row: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    **stats,
                    "time_s": round(time.time() - t0, 1),
                }
                done = epoch + 1
                is_best = False
                final = epoch + 1 == t.epochs or self.out_of_time
                if self.val_loader is not None and ((epoch + 1) % t.eval_interval == 0 or final):
                    try:
                        last_eval = self.evaluate()
                    except KeyboardInterrupt:  # Ctrl-C while evaluating: the epoch's training is kept
                        self._save_partial(epoch, every_process=False)
                        raise
                    if t.eval_every_s is not None:
                        self.curve_point(epoch, last_eval)
                    if last_eval is not None:
                        row.update(last_eval["stats"])
                        ap = last_eval["stats"]["AP"]
                        is_best = ap > self.best_ap
                        if is_best:
                            self.best_ap, self.best_epoch, self.bad_evals = ap, epoch + 1, 0
                        else:
                            self.bad_evals += 1
                if self.main:
                    # metrics first: a kill between the two leaves a row that resume drops, never a missing row
                    self.logger.epoch(row)
                    ckpt = self.checkpoint(epoch + 1)
                    atomic_save(ckpt, self.out_dir / "last.pth")
                    self.saved_s = self.train_time_s
                    if is_best or self.val_loader is None:
                        atomic_save(best_checkpoint(ckpt), self.out_dir / "best.pth")
                    budget = None if t.time_budget_s is None else t.time_budget_s - self.train_time_s
                    left = 0 if self.out_of_time else until - epoch - 1
                    eta = runlog.eta_note(time.time() - run_t0, epoch + 1 - self.start_epoch, left, budget)
                    log.info("epoch %d: %s%s", epoch + 1, runlog.format_row(row), eta)
                stop = (t.patience > 0 and self.bad_evals >= t.patience) or self.out_of_time
                if self.out_of_time and self.main:
                    log.info("time budget of %.0f s used: stopping after epoch %d", t.time_budget_s, epoch + 1)
                stop = rank0_decides(stop, self.device)
                if stop:
                    if self.main and not self.out_of_time:
                        log.info("early stop: no AP improvement in %d evaluations", t.patience)
                    break
            if self.main and why is None:
                self.anneal.report_end()
        finally:
            self.logger.close()
            cleanup()
        shown = last_eval and {k: v for k, v in last_eval.items() if k != "precision"}  # not a [10,101,K,4,3] array
        return {"best_ap": self.best_ap, "best_epoch": self.best_epoch, "epochs_run": done,
                "last_eval": shown, "output_dir": str(self.out_dir)}  # fmt: skip
