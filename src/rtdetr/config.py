"""Typed configuration: the single source of truth for building models (and, later, training runs).

Dataclass field names equal constructor argument names, so ``build_*`` functions are thin. Loading from a
mapping (YAML recipe, checkpoint, CLI overrides) is strict (:mod:`rtdetr.config_io`, re-exported here): unknown
keys are errors with a "did you mean" hint, and values are type-checked against the field annotations.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from rtdetr import config_io
from rtdetr.config_io import ConfigError, from_dict, merge_overrides, to_dict

__all__ = [
    "BackboneConfig",
    "ConfigError",
    "DEFAULT_EMA",
    "DEFAULT_WARMUP_ITERS",
    "DEFAULT_WARMUP_SHARE",
    "DecoderConfig",
    "EncoderConfig",
    "DataConfig",
    "ModelConfig",
    "ParamGroupRule",
    "RunConfig",
    "TrainConfig",
    "apply_dotted_overrides",
    "from_dict",
    "merge_overrides",
    "to_dict",
]


#: The LR warm-up's largest share of a run's optimizer steps in RT-DETR's recipe (``train.warmup_share``).
DEFAULT_WARMUP_SHARE = 0.1
#: RT-DETR's LR warm-up steps, and its EMA's (decay, ramp steps): what an unresolved TrainConfig uses.
DEFAULT_WARMUP_ITERS = 2000
DEFAULT_EMA = (0.9999, 2000)


def _at_least(cfg: Any, low: int, *names: str) -> None:
    """Each of the fields ``names`` of ``cfg`` that is set (not None) must be >= ``low``."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not value >= low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")


@dataclass(frozen=True)
class BackboneConfig:
    name: Literal["presnet", "hgnetv2"] = "presnet"
    depth: int = 50
    """PResNet depth: 18, 34, 50 or 101."""
    variant: str = "d"
    """PResNet variant ('d' = ResNet-vd)."""
    arch: Literal["L", "X", "H"] = "L"
    """HGNetv2 architecture."""
    return_idx: tuple[int, ...] = (1, 2, 3)
    """Backbone stages fed to the encoder (1, 2, 3 = strides 8, 16, 32)."""
    freeze_at: int = 0
    """-1 freezes nothing; k >= 0 freezes the stem and (PResNet) the first k stages."""
    freeze_norm: bool = True
    """Replace the backbone's BatchNorm by FrozenBatchNorm2d."""
    use_lab: bool = False
    """HGNetv2 learnable affine blocks (False for RT-DETR L/X)."""


@dataclass(frozen=True)
class EncoderConfig:
    in_channels: tuple[int, ...] = (512, 1024, 2048)
    """Channels of the backbone maps, fine to coarse."""
    feat_strides: tuple[int, ...] = (8, 16, 32)
    hidden_dim: int = 256
    use_encoder_idx: tuple[int, ...] = (2,)
    """Levels processed by AIFI (the official models use only the stride-32 map)."""
    num_encoder_layers: int = 1
    nhead: int = 8
    dim_feedforward: int = 1024
    dropout: float = 0.0
    enc_act: str = "gelu"
    expansion: float = 1.0
    """CSPRep hidden width as a fraction of hidden_dim (0.5 for R18/R34/R50-m)."""
    depth_mult: float = 1.0
    """RepVGG blocks per CSPRep layer = round(3 * depth_mult)."""
    act: str = "silu"
    pe_temperature: int = 10000
    version: Literal["v1", "v2"] = "v2"
    """Key names of ``input_proj``: v1 ``input_proj.{i}.0/1``, v2 ``input_proj.{i}.conv/norm``."""


@dataclass(frozen=True)
class DecoderConfig:
    feat_channels: tuple[int, ...] = (256, 256, 256)
    feat_strides: tuple[int, ...] = (8, 16, 32)
    hidden_dim: int = 256
    num_levels: int = 3
    """Feature levels attended; extra levels beyond the encoder outputs get a 3x3 stride-2 projection."""
    num_queries: int = 300
    num_layers: int = 6
    num_points: tuple[int, ...] = (4, 4, 4)
    """Sampling points per level (RT-DETRv2 allows a different count per level)."""
    nhead: int = 8
    dim_feedforward: int = 1024
    dropout: float = 0.0
    activation: str = "relu"
    num_denoising: int = 100
    label_noise_ratio: float = 0.5
    box_noise_scale: float = 1.0
    learn_query_content: bool = False
    eval_idx: int = -1
    """Decoder layer whose prediction is returned at inference (-1 = last); later layers are not run."""
    cross_attn_method: Literal["default", "discrete"] = "default"
    """Deformable sampling: bilinear ``grid_sample`` or RT-DETRv2's discrete (nearest, gather-based) sampling."""
    query_select_method: Literal["default", "one2many", "agnostic"] = "default"
    offset_scale: float = 0.5
    version: Literal["v1", "v2"] = "v2"
    """Key names / buffers: v2 ``enc_output.proj/norm`` + ``anchors``/``valid_mask``/``num_points_scale``; v1 not."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "rtdetr_r50vd"
    """Variant name this config was built from (informational)."""
    num_classes: int = 80
    eval_spatial_size: tuple[int, int] | None = (640, 640)
    """(height, width) for which anchors are precomputed and at which val/predict/export run; any other input
    size is still handled. In a training run it is always ``data.image_size``."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        enc, dec = self.encoder, self.decoder
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}")
        common = ("hidden_dim", "nhead", "dim_feedforward")
        for where, part, positive, counts in (
            ("encoder", enc, common, ("num_encoder_layers",)),
            ("decoder", dec, (*common, "num_queries", "num_layers"), ("num_denoising",)),
        ):
            try:
                _at_least(part, 1, *positive)
                _at_least(part, 0, *counts)
            except ConfigError as e:
                raise ConfigError(f"{where}.{e}") from None
        if not (0 <= enc.dropout < 1 and 0 <= dec.dropout < 1 and 0 <= dec.label_noise_ratio <= 1):
            raise ConfigError("dropout must be within [0, 1) and decoder.label_noise_ratio within [0, 1]")
        if not (enc.expansion > 0 and enc.depth_mult > 0 and dec.box_noise_scale >= 0 and dec.offset_scale > 0):
            raise ConfigError("encoder.expansion, encoder.depth_mult and decoder.offset_scale must be > 0, "
                              "decoder.box_noise_scale >= 0")  # fmt: skip
        if len(enc.in_channels) != len(enc.feat_strides):
            raise ConfigError("encoder.in_channels and encoder.feat_strides must have the same length")
        if len(self.backbone.return_idx) != len(enc.in_channels):
            raise ConfigError("backbone.return_idx must select as many maps as encoder.in_channels lists")
        if any(i >= len(enc.in_channels) for i in enc.use_encoder_idx):
            raise ConfigError(f"encoder.use_encoder_idx {enc.use_encoder_idx} out of range")
        if len(dec.feat_channels) != len(enc.in_channels) or any(c != enc.hidden_dim for c in dec.feat_channels):
            raise ConfigError("decoder.feat_channels must repeat encoder.hidden_dim once per encoder level")
        if dec.num_levels < len(dec.feat_channels):
            raise ConfigError("decoder.num_levels must be >= the number of encoder levels")
        if len(dec.num_points) != dec.num_levels or min(dec.num_points) < 1:
            points, levels = dec.num_points, dec.num_levels
            raise ConfigError(f"decoder.num_points {points} must give >= 1 point for each of {levels} levels")
        if not -dec.num_layers <= dec.eval_idx < dec.num_layers:
            raise ConfigError(f"decoder.eval_idx {dec.eval_idx} out of range for {dec.num_layers} layers")
        if dec.hidden_dim % dec.nhead or enc.hidden_dim % enc.nhead:
            raise ConfigError("hidden_dim must be divisible by nhead")
        if self.eval_spatial_size is not None and min(self.eval_spatial_size) < 32:
            raise ConfigError(f"eval_spatial_size {self.eval_spatial_size} must be >= 32 on each side")


@dataclass(frozen=True)
class DataConfig:
    train: str = ""
    """Training set: a COCO json, a YOLO data.yaml or images folder, or a VOC folder (format auto-detected)."""
    val: str | None = None
    """Validation set (same forms). None: the training source's own validation split where it has one apart from
    the training images (a data.yaml's ``val``, ``ImageSets/Main/val.txt``, a ``valid/`` folder, an
    ``annotations/*val*.json``), said in the log; with ``auto_val`` false, or no such split, no evaluation."""
    auto_val: bool = True
    """With ``val`` unset, validate on the training source's own validation split when it has one."""
    format: Literal["auto", "coco", "yolo", "voc"] = "auto"
    train_split: str = "train"
    """Split name for YOLO data.yaml / VOC ImageSets / COCO annotation folders."""
    val_split: str = "val"
    image_size: tuple[int, int] = (640, 640)
    """(height, width) of the network input."""
    augment: bool | None = None
    """Photometric distort, zoom-out and IoU crop. None: ``train.recipe_defaults`` decides (official: on;
    fast_small: off, as measured)."""
    hflip: bool = True
    """Random horizontal flips in training (turn off for text, arrows or left/right classes)."""
    multi_scale: bool | None = None
    """Resize each training batch to a random size of the official 480..800 list scaled to image_size (both sides
    by one factor: a wide input stays wide). None: ``train.recipe_defaults`` decides (official: on; fast_small:
    off, as measured)."""
    workers: int = 2
    """DataLoader worker processes (0 = load in the main process)."""
    shrink_above: float = 2.0
    """An image larger than ``shrink_above`` times ``image_size`` on both sides is shrunk to that when loaded (aspect
    ratio kept; JPEGs decode at a reduced scale), before augmentation: phone photos train at the pace of small
    images, with twice the input's pixels per side left for crops. 0 keeps every image at full resolution."""
    mosaic: float | None = None
    """Probability that a training image becomes a mosaic of four (2x2 grid, random window, objects at
    ``mosaic_scale`` times their size); off in the no-augmentation tail. None: ``train.recipe_defaults`` decides."""
    mosaic_scale: tuple[float, float] = (0.5, 1.0)
    mixup: float | None = None
    """Probability of blending a training image with another (weights 0.4..0.6, both boxes sets kept). None:
    ``train.recipe_defaults`` decides."""
    copy_paste: float = 0.0
    """Probability of pasting up to 8 object boxes of another training image onto free places of this one."""

    def __post_init__(self) -> None:
        for name in ("mosaic", "mixup", "copy_paste"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} is a probability: {getattr(self, name)} is not within [0, 1]")
        if min(self.image_size) < 32:
            raise ConfigError(f"image_size {list(self.image_size)} must be >= 32 on each side")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.shrink_above != 0 and not self.shrink_above >= 1:
            raise ConfigError(f"shrink_above must be 0 (never shrink) or >= 1, got {self.shrink_above}")
        lo, hi = self.mosaic_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"mosaic_scale {self.mosaic_scale} must satisfy 0 < low <= high <= 1")


@dataclass(frozen=True)
class ParamGroupRule:
    """An optimizer parameter group as RT-DETR's official configs write one (``optimizer.params``): the trainable
    parameters in whose name the regular expression ``match`` is found (``re.search``, e.g.
    ``'^(?=.*backbone)(?!.*norm).*$'``: backbone, no norm), at their own ``lr`` and ``weight_decay`` (None:
    ``train.lr``, ``train.weight_decay``)."""

    match: str
    lr: float | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        try:
            re.compile(self.match)
        except re.error as e:
            raise ConfigError(f"match {self.match!r} is not a regular expression ({e})") from None
        if (self.lr is not None and self.lr < 0) or (self.weight_decay is not None and self.weight_decay < 0):
            raise ConfigError(f"lr and weight_decay must be >= 0, got {self.lr} and {self.weight_decay}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 72
    batch_size: int | None = None
    """Global batch size (divided across processes). None: ``recipe_defaults`` decides (official 16; fast_small 4, or
    16 when the training images hold fewer than 7 objects on average)."""
    accumulate: int = 1
    """Gradient accumulation steps per optimizer step."""
    lr: float | None = None
    """AdamW learning rate. None: ``recipe_defaults`` decides (official 1e-4, the backbone's 1e-5; fast_small 1e-3
    for both, or 4e-4 when a step holds fewer than 28 objects: batch x accumulate x objects per image)."""
    backbone_lr: float | None = None
    """The backbone's learning rate (None: ``recipe_defaults`` decides). Not with ``param_groups``."""
    weight_decay: float = 1e-4
    no_decay_norm_bias: bool | None = None
    """No weight decay on normalisation parameters and biases (None: on, unless ``param_groups`` are set)."""
    param_groups: tuple[ParamGroupRule, ...] = ()
    """Optimizer groups by parameter name, as the official configs make them: each rule's parameters (a parameter
    may match one rule only), then every other trainable parameter at ``lr`` and ``weight_decay``. Set, they
    replace the backbone/head split, so ``backbone_lr`` and ``no_decay_norm_bias`` stay unset. The shipped COCO
    recipes carry their official configs' rules."""
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8  # AdamW
    warmup_iters: int | None = None
    """Linear warm-up of the learning rate over this many optimizer steps (capped at ``warmup_share`` of the run).
    None: ``recipe_defaults`` decides (official 2000, fast_small 100)."""
    warmup_share: float | None = None
    """Cap of the LR warm-up as a share of the run's optimizer steps (1.0: no cap; None: ``recipe_defaults``)."""
    recipe_defaults: Literal["auto", "official", "fast_small"] = "auto"
    """Values of the settings left at None/``auto`` (batch_size, lr, backbone_lr, schedule, schedule_over,
    anneal_from, warmup_iters, warmup_share, ema_decay, ema_warmups, no_aug_fraction, cls_loss, data.augment,
    data.multi_scale, data.mosaic, data.mixup): ``official`` (RT-DETR's),
    ``fast_small`` (faster from scratch on small data; ``rtdetr.defaults``) or ``auto``: fast_small for a training
    set of at most 2000 images trained from scratch (no ``init_from``), official otherwise. The resolved values
    are saved with the run."""
    schedule: Literal["auto", "constant", "cosine", "flat_cosine", "step"] = "auto"
    """After the warm-up: constant, cosine to ``min_lr_ratio``, ``flat_cosine`` (constant for the first
    ``flat_share`` of the run, then cosine), or ``step`` (``gamma`` at each milestone)."""
    flat_share: float = 0.5
    """Share of the run a ``flat_cosine`` schedule keeps the full LR."""
    anneal_from: Literal["auto", "start", "found"] = "auto"
    """Where a cosine schedule's clock starts: ``start`` (it spans the whole run) or ``found``: the LR holds its
    peak until the run has found its objects (the final decoder layer's matched boxes reach a mean GIoU of
    ``found_giou`` over ``log_interval`` steps), then the cosine spans the rest of the run. A run from scratch
    that anneals while its loss is still on the first plateau ends near zero AP. None/auto: ``recipe_defaults``."""
    found_giou: float = 0.5
    """Mean GIoU (-1..1) of the matched boxes at which ``anneal_from: found`` starts the cosine."""
    milestones: tuple[int, ...] = ()
    """Epochs at which a 'step' schedule multiplies the LR by ``gamma``."""
    gamma: float = 0.1
    min_lr_ratio: float = 0.05
    """Final LR of the 'cosine' schedule as a fraction of the initial LR."""
    clip_grad: float = 0.1
    """Max gradient norm (0 = off)."""
    ema: bool = True
    ema_decay: float | None = None
    """Decay of the weights' moving average, ramped up as ``ema_decay * (1 - exp(-step / ema_warmups))``. None:
    ``recipe_defaults`` decides (official 0.9999 over 2000 steps; fast_small 0.999 over 200: on BCCD over 15
    minutes the official EMA and LR warm-up lost 1.4 AP, each of 3 seeds; README round 12)."""
    ema_warmups: int | None = None
    """Steps of the EMA's ramp (capped at 20% of the run's steps). None: ``recipe_defaults`` decides."""
    amp: bool | None = None
    """Mixed precision: autocast in ``amp_dtype`` (a GradScaler with fp16), the criterion in fp32. None (``auto``):
    on where the CPU has native bf16 (AVX512_BF16/AMX: 1.45x the steps in the same time on BCCD and a better AP at
    every evaluation, +2.9 points at 8 minutes, README round 10), off elsewhere (emulated bf16 is several times slower;
    on CUDA fp16 from scratch is unmeasured here: ``true`` turns it on, as the official recipes do)."""
    amp_dtype: Literal["auto", "fp16", "bf16"] = "auto"
    """``auto``: fp16 on CUDA, bf16 on the CPU (fast only with native bf16: AVX512_BF16/AMX; the trainer warns)."""
    cls_loss: Literal["auto", "vfl", "mal"] = "auto"
    """Classification loss: varifocal (official RT-DETR) or DEIM's matchability-aware loss (targets IoU^1.5, no
    down-weighting of positives with a low IoU)."""
    o2m_queries: int = 0
    """A one-to-many branch in training only (H-DETR hybrid matching): the top this many encoder proposals are
    decoded a second time, isolated from the other queries, against the ground truth repeated ``o2m_repeat``
    times (many positives per object: denser supervision). No parameters; inference is unchanged. 0 = off."""
    o2m_repeat: int = 4
    no_aug_epochs: int = 1
    """Final epochs without photometric/zoom/crop augmentation and multi-scale (RT-DETRv2 dynamic augmentation)."""
    channels_last: bool = False
    """NHWC layout for convolutions. Faster steps on some CPUs (r18vd fp32: 8% faster on Zen 4, 13% slower on Zen
    2; bf16 autocast on an AMX Xeon: 1.03 s against 1.41 s at 640 batch 2, epochs 0.90x on BCCD at 320, 0.92x on
    the demo at 160) but not the default: in equal epochs it learned as well on BCCD (AP 0.582 against 0.580, 2
    seeds) and less on the demo on each of 3 seeds (0.585 against 0.669; in fp32 one demo seed did not lag:
    0.672 against 0.652; README round 11)."""
    freeze_bn_stats: bool = False
    """Keep BatchNorm layers on their running statistics during training."""
    sync_bn: bool = False
    """Synchronise BatchNorm statistics across processes (CUDA only)."""
    eval_interval: int = 1
    eval_decoder_depth: int | None = None
    """Decoder layers used for validation (None = the model's inference depth)."""
    patience: int = 0
    """Stop after this many evaluations without a better AP (0 = never)."""
    max_nan_steps: int = 20
    """Abort after this many consecutive non-finite losses (each such step is skipped)."""
    seed: int = 0
    device: str = "auto"
    output_dir: str = "runs/train"
    """Where the run writes; if an earlier run left checkpoints or metrics there, a fresh ``<dir>2``, ``<dir>3``,
    ... is used instead (unless ``exist_ok``; a resumed run writes into its own folder)."""
    exist_ok: bool = False
    """Write into ``output_dir`` even if an earlier run left files there (they are replaced)."""
    partial_init: bool = False
    """Let ``init_from`` load a checkpoint of another architecture, leaving what does not fit at random init
    (by default only the class heads may differ, for a new class count)."""
    log_interval: int = 20
    max_iters_per_epoch: int | None = None
    """Cut epochs short (quick experiments and tests)."""
    time_budget_s: float | None = None
    """Stop (evaluate, checkpoint) once training has used this many seconds (fixed-budget runs): the time spent in
    training steps; evaluations, checkpoints and start-up come on top (``rtdetr train --minutes 3`` on BCCD at
    320 with an evaluation per epoch took 3.9 minutes)."""
    schedule_over: Literal["auto", "epochs", "time"] = "auto"
    """What the LR schedule and the no-augmentation tail follow: ``epochs`` (``epochs``, ``no_aug_epochs``) or
    ``time``: the share of ``time_budget_s`` used (cosine over the budget; augmentation off for its last
    ``no_aug_fraction``), for runs whose length is a wall-clock budget rather than a number of epochs."""
    no_aug_fraction: float | None = None
    """The final share of the run trained without strong augmentation (photometric, zoom-out, IoU crop, mosaic,
    mixup, copy-paste) and multi-scale: of the time budget with ``schedule_over: time``, else of the epochs (the
    longer of this and ``no_aug_epochs``). None: ``recipe_defaults`` decides."""
    eval_every_s: float | None = None
    """Also evaluate each time training has used another this many seconds (mid-epoch; the evaluation's own time
    is not counted); the points go to ``curve.csv`` (AP against training time)."""
    save_every_s: float | None = 1800.0
    """Also write ``last.pth`` inside an epoch each time training has used another this many seconds since the
    last save: the epoch's progress, as Ctrl-C saves it (``--resume`` goes on from there), so that a run killed
    without warning (SIGKILL, out of memory, a power cut) loses at most this much training. None: at epoch ends
    (and on Ctrl-C or SIGTERM) only."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        batch = 1 if self.batch_size is None else self.batch_size  # 0 is not None: 'batch_size or 1' let it by
        if min(self.epochs, batch, self.accumulate, self.o2m_repeat) < 1:
            raise ConfigError("epochs, batch_size, accumulate and o2m_repeat must be >= 1")
        _at_least(self, 1, "eval_interval", "max_nan_steps", "log_interval", "max_iters_per_epoch",
                  "eval_decoder_depth")  # fmt: skip
        _at_least(self, 0, "weight_decay", "warmup_iters", "clip_grad", "ema_warmups", "patience")
        if not (self.eps > 0 and self.gamma > 0 and all(0 <= b < 1 for b in self.betas)):
            raise ConfigError(f"eps and gamma must be > 0 and betas within [0, 1), got {self.eps}, {self.gamma}, "
                              f"{self.betas}")  # fmt: skip
        if not ((self.ema_decay is None or 0 <= self.ema_decay < 1) and 0 <= self.min_lr_ratio <= 1):
            raise ConfigError(f"ema_decay must be within [0, 1) and min_lr_ratio within [0, 1], got "
                              f"{self.ema_decay} and {self.min_lr_ratio}")  # fmt: skip
        if self.o2m_queries < 0:
            raise ConfigError(f"o2m_queries must be >= 0, got {self.o2m_queries}")
        if self.no_aug_epochs < 0:  # more than epochs: every epoch is in the tail (training says so)
            raise ConfigError(f"no_aug_epochs must be >= 0, got {self.no_aug_epochs}")
        if (self.lr is not None and self.lr <= 0) or (self.backbone_lr is not None and self.backbone_lr < 0):
            raise ConfigError("lr must be > 0 and backbone_lr >= 0")
        if self.param_groups and (self.backbone_lr is not None or self.no_decay_norm_bias is not None):
            raise ConfigError(
                "param_groups set every parameter's lr and weight decay: leave backbone_lr and no_decay_norm_bias "
                "unset (a rule such as {match: '^(?=.*backbone)', lr: 1.0e-5} gives the backbone its lr)"
            )
        if self.schedule_over == "time" and not self.time_budget_s:
            raise ConfigError("schedule_over 'time' needs time_budget_s (the length the schedule follows)")
        if self.schedule_over == "time" and self.schedule == "step":
            raise ConfigError("schedule 'step' has epoch milestones: use cosine or constant with schedule_over time")
        if self.no_aug_fraction is not None and not 0.0 <= self.no_aug_fraction < 1.0:
            raise ConfigError(f"no_aug_fraction {self.no_aug_fraction} must be within [0, 1)")
        if not -1.0 < self.found_giou < 1.0:
            raise ConfigError(f"found_giou {self.found_giou} must be within (-1, 1)")
        if not 0.0 <= self.flat_share < 1.0 or not 0.0 < self.warmup_cap <= 1.0:
            raise ConfigError("flat_share must be within [0, 1) and warmup_share within (0, 1]")
        for name in ("time_budget_s", "eval_every_s", "save_every_s"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {getattr(self, name)}")

    @property
    def warmup_cap(self) -> float:
        """``warmup_share``, or :data:`DEFAULT_WARMUP_SHARE` while it is unset (None)."""
        return DEFAULT_WARMUP_SHARE if self.warmup_share is None else self.warmup_share

    @property
    def warmup_steps(self) -> int:
        """``warmup_iters``, or the official :data:`DEFAULT_WARMUP_ITERS` while it is unset (None)."""
        return DEFAULT_WARMUP_ITERS if self.warmup_iters is None else self.warmup_iters

    @property
    def ema_ramp(self) -> tuple[float, int]:
        """``(ema_decay, ema_warmups)``, each the official :data:`DEFAULT_EMA` value while it is unset (None)."""
        decay = DEFAULT_EMA[0] if self.ema_decay is None else self.ema_decay
        return decay, DEFAULT_EMA[1] if self.ema_warmups is None else self.ema_warmups


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init_from: str | None = None
    """Checkpoint to start from (official, HF or ours); heads with another class count are re-initialised."""
    resume: str | None = None
    """Training checkpoint (last.pth) to continue exactly."""

    def __post_init__(self) -> None:
        # one input size per run: the network is trained at data.image_size, and the checkpoint's
        # eval_spatial_size (what val, predict, export and serve run at) is that size, whatever the entry point
        size = (int(self.data.image_size[0]), int(self.data.image_size[1]))
        if self.model.eval_spatial_size != size:
            object.__setattr__(self, "model", dataclasses.replace(self.model, eval_spatial_size=size))


def apply_dotted_overrides(data: dict[str, Any], overrides: list[str], schema: Any = None) -> dict[str, Any]:
    """:func:`rtdetr.config_io.apply_dotted_overrides` with :class:`RunConfig` as the default ``schema``."""
    return config_io.apply_dotted_overrides(data, overrides, RunConfig if schema is None else schema)
