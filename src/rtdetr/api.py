"""High-level Python API: ``RTDETR("rtdetr_r18vd" | checkpoint).train(...) / .val(...) / .predict(...)``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rtdetr.config import ConfigError, DataConfig, RunConfig, to_dict
from rtdetr.convert.checkpoint import checkpoint_file
from rtdetr.data.coco import COCO_CLASSES
from rtdetr.data.records import DatasetIndex
from rtdetr.engine.backend import Detector, TorchDetector, open_detector
from rtdetr.engine.distributed import resolve_device
from rtdetr.engine.predictor import Predictor
from rtdetr.engine.results import Results
from rtdetr.engine.saver import save_results
from rtdetr.models import list_models
from rtdetr.models.rtdetr import RTDETR as RTDETRModel
from rtdetr.options import InferenceOptions, as_size, class_key, resolve_classes, size_text
from rtdetr.recipe import keyword_sections, load_recipe

__all__ = ["RTDETR"]

log = logging.getLogger("rtdetr")


class RTDETR:
    """A detector you can train, validate and run.

    Args:
        model: a variant name (random weights, e.g. ``"rtdetr_r18vd"``) or a checkpoint: ours, an official
            ``.pth`` or an HF ``model.safetensors``; a run folder stands for its ``best.pth``; or an exported
            ``.onnx`` / OpenVINO ``.xml``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        class_names: names by label (default: from the checkpoint, COCO for 80-class models, else ``"0"``...).
        precision: ``"auto"`` (default: bf16 autocast on CPUs with native bf16, i.e. AVX512_BF16 or AMX, where it
            is about 2x faster for R18; fp16 on CUDA; else fp32: see :attr:`precision_reason`), ``"fp32"``,
            ``"bf16"`` or ``"fp16"`` (CUDA) for predict/val/benchmark.
        channels_last: NHWC memory for convolutions (default: on for the CPU, where oneDNN prefers it).
        fuse: predict with a ``deploy()``-fused copy (Conv+BN folded, RepVGG merged; same outputs, faster). The
            copy is rebuilt when the weights or the decoder depth of :attr:`model` change.
        threads: threads of an exported graph's runtime (ONNX Runtime, OpenVINO); PyTorch models use
            ``torch.set_num_threads``.
        compile: ``torch.compile`` mode for inference (``"default"``, ``"reduce-overhead"``, ``"max-autotune"``).
        cuda_graph: replay inference as CUDA graphs, one per input shape (CUDA only).
        **overrides: model config overrides, e.g. ``num_classes=3``, ``decoder={"num_layers": 4}``.

    The model runs through :attr:`backend` (a :class:`~rtdetr.engine.backend.Detector`: PyTorch, ONNX Runtime
    or OpenVINO); :attr:`model` is the PyTorch module where there is one.

    Example:
        >>> det = RTDETR("rtdetr_r18vd")
        >>> results = det.predict("image.jpg", conf=0.5)
    """

    def __init__(
        self,
        model: str | Path = "rtdetr_r18vd",
        device: str = "auto",
        class_names: Sequence[str] | None = None,
        precision: str = "auto",
        channels_last: bool | None = None,
        fuse: bool = True,
        threads: int | None = None,
        compile: str | None = None,
        cuda_graph: bool = False,
        **overrides: Any,
    ) -> None:
        self.device = resolve_device(device)
        model = checkpoint_file(model)  # a run folder: its best.pth
        graph = str(model).endswith((".onnx", ".xml"))
        if channels_last is None:
            channels_last = self.device.type == "cpu" and not graph
        self.backend: Detector = open_detector(
            model, self.device, precision, channels_last, fuse, threads if graph else None, compile, cuda_graph,
            **overrides,
        )  # fmt: skip
        self.checkpoint: Path | None = None if str(model) in list_models() else Path(model)
        if self.checkpoint is None:
            log.warning("%s has RANDOM weights: pass a checkpoint to get real detections", model)
        self._set_class_names(class_names)
        self._shrink: float | None = None  # the run's data.shrink_above, read at the first predict

    def _set_class_names(self, given: Sequence[str] | None) -> None:
        n = self.backend.num_classes
        names = list(given) if given is not None else self.backend.class_names
        if names is None:
            if n is None:
                raise ValueError(f"{self.checkpoint}: no class names in the file; pass class_names=")
            names = list(COCO_CLASSES) if n == 80 else [str(i) for i in range(n)]
        if n is not None and len(names) != n:
            raise ValueError(f"{len(names)} class names for a {n}-class model")
        self.class_names = [str(x) for x in names]

    @property
    def precision(self) -> str:
        return self.backend.precision

    @property
    def precision_reason(self) -> str:
        """Why :attr:`precision` was chosen (e.g. ``"auto: fp32, the CPU has no native bf16 (avx2)"``)."""
        return str(getattr(self.backend, "precision_reason", ""))

    @property
    def channels_last(self) -> bool:
        return self.backend.channels_last

    @property
    def fuse(self) -> bool:
        return bool(getattr(self.backend, "fuse", False))

    def _torch(self, what: str) -> TorchDetector:
        if not isinstance(self.backend, TorchDetector):
            kind = self.backend.kind
            raise ValueError(f"{what} needs the PyTorch model; {self.checkpoint} is an exported {kind} graph")
        return self.backend

    @property
    def model(self) -> RTDETRModel:
        """The PyTorch module (not available for an exported graph: use :attr:`backend`)."""
        return self._torch("RTDETR.model").model  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return self.backend.num_classes or len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.backend.image_size or (640, 640)

    def info(self) -> dict[str, Any]:
        from rtdetr.bench.profile import count_parameters

        info: dict[str, Any] = {
            "backend": self.backend.kind,
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "decoder_depth": self.backend.decoder_depth,
            "device": str(self.device),
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
        }
        if isinstance(self.backend, TorchDetector):
            assert self.model.config is not None
            info["variant"] = self.model.config.name
            info["params_m"] = round(count_parameters(self.model) / 1e6, 2)
        return info

    # ------------------------------------------------------------------------------------------------ predict
    def inference_model(self) -> RTDETRModel:
        """The module predict() runs: :attr:`model`, or with ``fuse`` a cached fused copy of it (in bf16/fp16 its
        convolution and linear weights are in that dtype: call it under ``torch.autocast``)."""
        return self._torch("inference_model()").module()  # type: ignore[return-value]

    def predictor(
        self,
        conf: float = InferenceOptions.conf,
        max_det: int = InferenceOptions.max_det,
        classes: Sequence[int | str] | str | None = InferenceOptions.classes,
        decoder_depth: int | None = InferenceOptions.decoder_depth,
        image_size: int | tuple[int, int] | str | None = InferenceOptions.image_size,
        batch: int = InferenceOptions.batch,
        shrink_above: float | None = None,
    ) -> Predictor:
        """A :class:`Predictor` with these options (see :class:`rtdetr.options.InferenceOptions`; ``classes`` by id
        or name; a value out of range, a class past the model's classes or a depth past its decoder raise
        ValueError). Image files more than ``shrink_above`` times the input are decoded shrunk (default: as the
        run that wrote the checkpoint loaded its images, ``data.shrink_above``; 0: full resolution)."""
        opts = InferenceOptions(
            conf, max_det, resolve_classes(classes, self.class_names), decoder_depth,
            as_size(image_size), batch,
        )  # fmt: skip
        opts.check_model(self.backend.num_classes, self.backend.decoder_layers)
        if shrink_above is None:
            shrink_above = self._run_shrink()
        return Predictor(
            self.backend, self.class_names, self._input_size(opts.image_size), self.device, opts.conf, opts.max_det,
            opts.classes, opts.decoder_depth, opts.batch, shrink_above=shrink_above,
        )  # fmt: skip

    def _run_shrink(self) -> float:
        """``data.shrink_above`` of the run that wrote the checkpoint (read once), else the default."""
        if self._shrink is None:
            try:
                data = self._run_data()
            except ConfigError:  # a run config this version cannot read
                data = None
            self._shrink = data.shrink_above if data is not None else DataConfig.shrink_above
        return self._shrink

    def _input_size(self, image_size: tuple[int, int] | None) -> tuple[int, int]:
        """``(h, w)`` to run at: ``image_size``, else the model's; an exported graph runs at its own size only."""
        fixed = self.backend.image_size if self.backend.exported else None
        if fixed is not None and image_size is not None and tuple(image_size) != tuple(fixed):
            raise ValueError(
                f"the graph was exported at {size_text(fixed)} and runs only at that size; for "
                f"{size_text(image_size)} export the checkpoint again with --size (or image_size=)"
            )
        return tuple(image_size or self.image_size)  # type: ignore[return-value]

    def predict(
        self,
        source: Any,
        conf: float = InferenceOptions.conf,
        max_det: int = InferenceOptions.max_det,
        classes: Sequence[int | str] | str | None = InferenceOptions.classes,
        decoder_depth: int | None = InferenceOptions.decoder_depth,
        image_size: int | tuple[int, int] | str | None = InferenceOptions.image_size,
        batch: int = InferenceOptions.batch,
        stream: bool = False,
        output: str | Path | None = None,
        video_stride: int = 1,
        save_txt: bool = False,
        save_conf: bool = False,
        save_crop: bool = False,
    ) -> list[Results] | Iterator[Results]:
        """Detect objects in ``source`` (image, array, tensor, path, folder, glob, video, camera index, URL, or a
        list); of a video or stream every ``video_stride``-th frame. ``stream=True`` returns a generator (use it
        for videos and cameras). With ``output`` (a folder) each image's drawing and JSON, and each video's drawn
        video and JSON lines are written there (:class:`~rtdetr.engine.saver.ResultSaver`: no name reused);
        ``save_txt`` adds YOLO label files under ``output/labels/`` (``save_conf``: with the score), ``save_crop``
        each detection's crop under ``output/crops/<class>/``."""
        if isinstance(video_stride, bool) or not isinstance(video_stride, int) or video_stride < 1:
            raise ValueError(f"video_stride must be an integer >= 1; got {video_stride!r}")
        if (save_txt or save_conf or save_crop) and output is None:
            raise ValueError("save_txt, save_conf and save_crop write files: give output (a folder)")
        # drawings are made on the full image: with output, files are decoded once, at full resolution
        pred = self.predictor(conf, max_det, classes, decoder_depth, image_size, batch, 0.0 if output else None)
        gen = pred.stream(source, video_stride)
        if output is not None:
            gen = save_results(gen, output, video_stride, save_txt or save_conf, save_conf, save_crop)
        return gen if stream else list(gen)

    # ---------------------------------------------------------------------------------------------------- val
    def val(
        self,
        data: str | Path | None = None,
        split: str = "val",
        batch: int = 8,
        decoder_depth: int | None = None,
        conf: float = 0.5,
        image_size: int | tuple[int, int] | str | None = None,
        output: str | Path | None = None,
        format: str = "auto",
    ) -> dict[str, Any]:
        """COCO metrics (12 numbers), per-class AP/AP50, precision/recall/F1 at ``conf`` and a confusion matrix;
        with ``output`` (a folder) also metrics.json, predictions.json, per_class.csv, pr_curve.png and
        confusion_matrix.png. Without ``data``, the validation set of the run that wrote the checkpoint (its
        ``data.val``, else its training source's own val split), read from the working folder."""
        from rtdetr.data import load_index
        from rtdetr.engine.evaluator import validate
        from rtdetr.engine.logger import log_index

        named = self.class_names if any(not n.isdigit() for n in self.class_names) else None
        try:
            run = self._run_data()
        except ConfigError:  # a run config this version cannot read: needed only to find the run's val set
            if data is None:
                raise
            run = None
        # the model's names fix the label of each VOC class name (a val folder missing a class used to shift them)
        index = (
            self._run_val_set(run) if data is None else load_index(data, split, format, class_names=named)  # type: ignore[arg-type]
        )
        if index.unknown_classes and not index.num_boxes() and not any(len(r.ignore_labels) for r in index.records):
            theirs = ", ".join(f"{n!r} ({c})" for n, c in index.unknown_classes.most_common(10))
            raise ValueError(
                f"{index.source}: none of its objects is of a class this model detects: its classes are {theirs}; "
                f"the model's {len(self.class_names)} are {', '.join(self.class_names[:10])}"
                f"{', ...' if len(self.class_names) > 10 else ''} (a model trained on this data evaluates on it)"
            )
        log_index("val", index)  # its size, and what was left out (an object of a class the model lacks, say)
        differ = [
            (i, a, b) for i, (a, b) in enumerate(zip(named or [], index.class_names)) if class_key(a) != class_key(b)
        ]
        if differ and len(index.class_names) == len(self.class_names):
            log.warning(
                "the dataset's class names are not the model's, id by id (%s): labels are compared by id, so check "
                "the order", "; ".join(f"{i}: {b!r} in the data, {a!r} in the model" for i, a, b in differ[:3]),
            )  # fmt: skip
        save = str(output) if output is not None else None
        return validate(self.backend, index, self._input_size(as_size(image_size)), batch, decoder_depth, conf, save,
                        shrink_above=run.shrink_above if run else None)  # fmt: skip

    def _run_data(self) -> DataConfig | None:
        """The data settings of the training run that wrote :attr:`checkpoint`, where it holds them (an exported
        graph: where its export recorded them, see :meth:`_run_data_dict`)."""
        from rtdetr.config_io import from_dict

        data = self._run_data_dict()
        return from_dict(DataConfig, data, "data") if data else None

    def _run_data_dict(self) -> dict[str, Any] | None:
        """The ``data`` section of the checkpoint's run config as stored (None: no training run's data), which
        ``export()`` records in the graph."""
        from rtdetr.convert.checkpoint import read_checkpoint

        if self.checkpoint is None:
            return None
        if self.backend.exported:
            data = getattr(self.backend, "run_data", None)
        else:
            run = read_checkpoint(self.checkpoint, mmap=True).get("run_config")
            data = run.get("data") if isinstance(run, dict) else None
        return data if isinstance(data, dict) and data.get("train") else None

    def _run_val_set(self, data: DataConfig | None) -> DatasetIndex:
        """The validation set of the run that wrote :attr:`checkpoint` (its data settings ``data``: ``data.val``,
        else the training source's own val split), for ``val()`` without data; a ValueError says to give the data
        where there is none to find."""
        from rtdetr.data.detect import load_run_sets

        give = "give the data to evaluate on (--data, or data= in Python)"
        if data is None:
            graph = " (an export records them when made from a training run's checkpoint)"
            raise ValueError(f"{self.checkpoint or 'this model'} holds no training run's data settings"
                             f"{graph if self.backend.exported else ''}: {give}")  # fmt: skip
        for path in (data.train, data.val):
            if path and not Path(path).exists():
                raise ValueError(f"the run's data {path} is not found from {Path.cwd()}: {give}")
        _, index = load_run_sets(data)
        if index is None:
            raise ValueError(f"the run that wrote {self.checkpoint} had no validation set ({data.train}): {give}")
        log.warning("evaluating on the run's validation set: %s (%s, split %r)", index.source, index.format,
                    data.val_split)  # fmt: skip
        return index

    # -------------------------------------------------------------------------------------------------- train
    def train(
        self,
        data: str | Path | None = None,
        val: str | Path | None = None,
        recipe: str | Path | None = None,
        epochs: int | None = None,
        batch: int | None = None,
        image_size: int | tuple[int, int] | str | None = None,
        output: str | Path | None = None,
        minutes: float | None = None,
        resume: str | Path | None = None,
        **train: Any,
    ) -> dict[str, Any]:
        """Train this model (a checkpoint's weights are the starting point; heads are re-initialised for another
        class count). ``image_size`` is a side, ``(height, width)`` or ``"WIDTHxHEIGHT"``. ``minutes`` is a
        training time budget (``rtdetr train --minutes``); other keywords are settings of the ``train`` section
        (``lr=2e-4``, ``amp=True`` ...) or of the ``data`` section (``workers=4``, ``augment=True`` ...), by name; a
        name of neither is a TypeError that says the closest. ``resume`` (a run folder or its ``last.pth``)
        continues a stopped run where it stopped, with its own settings in its own folder (keywords given beside
        it still apply). The best weights are loaded into this object afterwards."""
        from rtdetr.engine.rundir import interrupted_note
        from rtdetr.engine.trainer import Trainer

        model = self._torch("train()").model
        updates: dict[str, Any] = keyword_sections(train, RTDETR.train)
        for section, key, value in (
            ("data", "train", data),
            ("data", "val", val),
            ("train", "epochs", epochs),
            ("train", "batch_size", batch),
            ("train", "output_dir", output),
            ("train", "time_budget_s", None if minutes is None else minutes * 60),
        ):
            if value is not None:
                updates[section][key] = str(value) if isinstance(value, Path) else value
        if image_size is not None:
            updates["data"]["image_size"] = list(as_size(image_size) or ())
        if resume is not None:
            updates["resume"] = str(resume)
        elif recipe is None:  # this model's own architecture, at the run's input size (RunConfig derives it)
            assert model.config is not None
            updates["model"] = to_dict(model.config)
        cfg: RunConfig = load_recipe(recipe, updates=updates)
        if self.checkpoint is not None and cfg.init_from is None and not cfg.resume:  # these weights are the start
            cfg = dataclasses.replace(cfg, init_from=str(self.checkpoint))
        if not cfg.data.train:
            raise ConfigError("train(): give data= (COCO json, YOLO data.yaml or VOC folder) or a recipe")
        trainer = Trainer(cfg)
        try:
            result = trainer.fit()
        except KeyboardInterrupt as e:  # what was saved, and how to go on
            raise type(e)(interrupted_note(trainer.out_dir, f".train(resume={str(trainer.out_dir)!r})")) from None
        best = Path(result["output_dir"]) / "best.pth"
        if best.is_file():  # keep this object's settings (device, precision, fuse...); take the trained weights
            self.backend = open_detector(best, self.device, self.precision, self.channels_last, self.fuse)
            self.checkpoint, self._shrink = best, None
            self._set_class_names(None)
        return result

    # ------------------------------------------------------------------------------------------------- export
    def export(
        self,
        format: str = "onnx",
        output: str | Path | None = None,
        image_size: int | tuple[int, int] | str | None = None,
        opset: int = 17,
        max_det: int = InferenceOptions.max_det,
        decoder_depth: int | None = None,
        simplify: bool = False,
        check: bool = True,
        int8: bool = False,
        calibration: str | Path | None = None,
        class_mask_input: bool = True,
    ) -> dict[str, Any]:
        """Export the fused model with its post-processor.

        ``format="onnx"`` writes an ONNX graph (parity-checked against PyTorch by default) to ``output``, by default
        beside the checkpoint (``runs/train/best.onnx``; a variant name: ``<name>.onnx`` here); ``int8=True`` also
        writes ``<stem>_int8.onnx`` calibrated on up to 64 images from ``calibration`` (an image folder or any
        dataset path). ``format="openvino"`` converts the ONNX graph to OpenVINO IR (``<stem>_openvino/<stem>.xml``,
        or exactly ``output`` when it ends in ``.xml``), and with ``int8=True`` the int8 graph too
        (``<stem>_int8_openvino/``, or ``<stem>_int8.xml`` beside an ``.xml`` output). ``class_mask_input=False``
        leaves out the graph's optional ``class_mask`` input: the official two-input interface. Returns
        the report.
        """
        from rtdetr.export.onnx import export_onnx

        self._torch("export()")
        if format not in ("onnx", "openvino"):
            raise ValueError(f"unsupported export format {format!r}; supported: onnx, openvino")
        if int8 and calibration is None:
            raise ValueError("int8 export needs calibration images (calibration=<image folder or dataset>)")
        if format == "openvino":  # said before minutes of exporting, not after
            from rtdetr.export.quantize import require_openvino

            require_openvino()
        images = _calibration_images(calibration) if calibration is not None and int8 else []  # before exporting
        assert self.model.config is not None
        size = as_size(image_size) or self.image_size
        # beside the checkpoint (runs/a/best.pth and runs/b/best.pth do not share one ./best.onnx); a variant: here
        default = self.checkpoint.with_suffix(".onnx") if self.checkpoint else Path(f"{self.model.config.name}.onnx")
        onnx_path = Path(output or default).with_suffix(".onnx")
        report = export_onnx(
            self.model,
            onnx_path,
            size,
            opset,
            max_det,
            check=check,
            simplify=simplify,
            decoder_depth=decoder_depth,
            class_names=self.class_names,
            run_data=self._run_data_dict(),
            class_mask_input=class_mask_input,
        ).as_dict()
        if int8:
            from rtdetr.export.quantize import quantize_onnx_int8

            q = quantize_onnx_int8(onnx_path, onnx_path.with_name(f"{onnx_path.stem}_int8.onnx"), images, size)
            report["int8_path"] = str(q)
        if format == "openvino":
            from rtdetr.export.quantize import to_openvino

            # an output named .xml is the IR's own path (the ONNX graph and the int8 IR beside it); else a folder
            beside = output is not None and Path(output).suffix.lower() == ".xml"
            ir_dir = onnx_path.parent if beside else onnx_path.parent / f"{onnx_path.stem}_openvino"
            report["openvino_path"] = str(to_openvino(onnx_path, ir_dir))
            if int8:  # OpenVINO runs the calibrated QDQ graph in int8: the fastest CPU path measured here
                q_path = Path(report["int8_path"])
                q_dir = q_path.parent if beside else q_path.parent / f"{q_path.stem}_openvino"
                report["openvino_int8_path"] = str(to_openvino(q_path, q_dir))
        return report

    def __repr__(self) -> str:
        return f"RTDETR({self.info()})"


def _calibration_images(source: str | Path, limit: int = 64) -> list[Path]:
    """Up to ``limit`` image paths from a folder or from any dataset path (COCO/YOLO/VOC, train split)."""
    from rtdetr.data import load_index
    from rtdetr.data.records import DataError, find_images

    p = Path(source)
    files = find_images(p) if p.is_dir() else []
    if not files:
        try:
            files = [r.path for r in load_index(p, "train").records]
        except DataError as e:  # a folder: "no images" says it better than the dataset-format message
            raise ValueError(f"{p}: no images in this folder, and not a dataset" if p.is_dir() else str(e)) from None
    if not files:
        raise ValueError(f"{source}: no calibration images found")
    step = max(1, len(files) // limit)
    return files[::step][:limit]
