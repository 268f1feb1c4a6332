"""High-level Python API: ``RTDETR("rtdetr_r18vd" | checkpoint).train(...) / .val(...) / .predict(...)``."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rtdetr.config import ConfigError, RunConfig, to_dict
from rtdetr.convert import load_model, read_checkpoint
from rtdetr.data.coco import COCO_CLASSES
from rtdetr.engine.distributed import resolve_device
from rtdetr.engine.predictor import Predictor
from rtdetr.engine.results import Results
from rtdetr.export.runtime import OnnxRuntimeDetector, OpenVinoDetector
from rtdetr.models import list_models
from rtdetr.models.rtdetr import RTDETR as RTDETRModel
from rtdetr.recipe import load_recipe

__all__ = ["RTDETR"]


class RTDETR:
    """A detector you can train, validate and run.

    Args:
        model: a variant name (random weights, e.g. ``"rtdetr_r18vd"``) or a checkpoint: ours, an official
            ``.pth`` or an HF ``model.safetensors``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        class_names: names by label (default: from the checkpoint, COCO for 80-class models, else ``"0"``...).
        precision: ``"fp32"``, ``"bf16"`` (autocast; about 2.6x faster for R18 on AVX512-BF16 CPUs) or ``"fp16"``
            (CUDA) for predict/val/benchmark; channels_last: NHWC memory for convolutions (default: on for the
            CPU, where oneDNN prefers it).
        fuse: predict with a ``deploy()``-fused copy (Conv+BN folded, RepVGG merged; same outputs, faster). The
            copy is rebuilt when the weights or the decoder depth of :attr:`model` change.
        **overrides: model config overrides, e.g. ``num_classes=3``, ``decoder={"num_layers": 4}``.

    Example:
        >>> det = RTDETR("rtdetr_r18vd")
        >>> results = det.predict("image.jpg", conf=0.5)
    """

    def __init__(
        self,
        model: str | Path = "rtdetr_r18vd",
        device: str = "auto",
        class_names: Sequence[str] | None = None,
        precision: str = "fp32",
        channels_last: bool | None = None,
        fuse: bool = True,
        **overrides: Any,
    ) -> None:
        self.device = resolve_device(device)
        self.precision, self.fuse = precision, fuse
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        self._fused: tuple[tuple[int, ...], RTDETRModel] | None = None
        self.checkpoint: Path | None = None
        self.onnx: OnnxRuntimeDetector | OpenVinoDetector | None = None  # an exported graph
        names: list[str] | None = None
        if str(model).endswith((".onnx", ".xml")):
            self.checkpoint = Path(model)
            threads = overrides.pop("threads", None)
            self.onnx = (
                OpenVinoDetector(self.checkpoint, threads)
                if str(model).endswith(".xml")
                else OnnxRuntimeDetector(self.checkpoint, threads=threads)
            )
            if overrides:
                raise ValueError(f"an ONNX model takes no model overrides, got {sorted(overrides)}")
            self.class_names = list(class_names or self.onnx.class_names or [])
            if not self.class_names:
                raise ValueError(f"{model}: no class names in the file; pass class_names=")
            return
        if str(model) in list_models():
            self.model: RTDETRModel = load_model(str(model), **overrides)
        else:
            self.checkpoint = Path(model)
            strict = "num_classes" not in overrides
            self.model = load_model(self.checkpoint, strict=strict, **overrides)
            if self.checkpoint.suffix != ".safetensors":
                saved = read_checkpoint(self.checkpoint).get("class_names")
                if isinstance(saved, list) and len(saved) == self.num_classes:
                    names = [str(n) for n in saved]
        if class_names is not None:
            names = list(class_names)
        if names is None:
            names = list(COCO_CLASSES) if self.num_classes == 80 else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for a {self.num_classes}-class model")
        self.class_names = names
        self.model.to(self.device).eval()

    @property
    def num_classes(self) -> int:
        if self.onnx is not None:
            return len(self.class_names)
        assert self.model.config is not None
        return self.model.config.num_classes

    @property
    def image_size(self) -> tuple[int, int]:
        if self.onnx is not None:
            return self.onnx.image_size or (640, 640)
        size = self.model.config.eval_spatial_size if self.model.config else None
        return (int(size[0]), int(size[1])) if size else (640, 640)

    def _require_torch(self, what: str) -> None:
        if self.onnx is not None:
            raise ValueError(f"{what} needs the PyTorch model; {self.checkpoint} is an exported ONNX graph")

    def info(self) -> dict[str, Any]:
        from rtdetr.bench.profile import count_parameters

        if self.onnx is not None:
            return {"onnx": str(self.checkpoint), "num_classes": self.num_classes, "image_size": self.image_size}
        assert self.model.config is not None
        return {
            "variant": self.model.config.name,
            "num_classes": self.num_classes,
            "params_m": round(count_parameters(self.model) / 1e6, 2),
            "image_size": self.image_size,
            "decoder_depth": self.model.decoder_depth,
            "device": str(self.device),
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
        }

    # ------------------------------------------------------------------------------------------------ predict
    def inference_model(self) -> RTDETRModel:
        """The module predict() runs: :attr:`model`, or with ``fuse`` a cached fused copy of it."""
        self._require_torch("inference_model()")
        if not self.fuse or self.model.deployed:
            return self.model
        key = (
            id(self.model),
            *(p._version for p in self.model.parameters()),
            *(b._version for b in self.model.buffers()),
        )
        if self._fused is None or self._fused[0] != key:
            self._fused = (key, copy.deepcopy(self.model).deploy())
        fused = self._fused[1]
        fused.set_decoder_depth(self.model.decoder_depth)
        return fused

    def predictor(
        self,
        conf: float = 0.25,
        max_det: int = 300,
        classes: Sequence[int] | None = None,
        decoder_depth: int | None = None,
        image_size: tuple[int, int] | None = None,
        batch: int = 1,
    ) -> Predictor:
        backend: Any = self.onnx if self.onnx is not None else self.inference_model()
        if self.onnx is not None and image_size is not None and tuple(image_size) != self.image_size:
            raise ValueError(f"the ONNX graph was exported at {self.image_size}; re-export for {tuple(image_size)}")
        return Predictor(
            backend,
            self.class_names,
            image_size or self.image_size,
            self.device,
            conf,
            max_det,
            classes,
            decoder_depth,
            batch,
            precision=self.precision,
            channels_last=self.channels_last,
        )

    def predict(
        self,
        source: Any,
        conf: float = 0.25,
        max_det: int = 300,
        classes: Sequence[int] | None = None,
        decoder_depth: int | None = None,
        image_size: tuple[int, int] | None = None,
        batch: int = 1,
        stream: bool = False,
        save_dir: str | Path | None = None,
    ) -> list[Results] | Iterator[Results]:
        """Detect objects in ``source`` (image, array, tensor, path, folder, glob, video, camera index, URL, or a
        list). ``stream=True`` returns a generator (use it for videos and cameras). With ``save_dir`` every drawn
        image and a JSON per image are written there."""
        pred = self.predictor(conf, max_det, classes, decoder_depth, image_size, batch)
        gen = pred.stream(source)
        if save_dir is not None:
            gen = _saving(gen, Path(save_dir))
        return gen if stream else list(gen)

    # ---------------------------------------------------------------------------------------------------- val
    def val(
        self,
        data: str | Path,
        split: str = "val",
        batch: int = 8,
        decoder_depth: int | None = None,
        conf: float = 0.5,
        image_size: tuple[int, int] | None = None,
        save_dir: str | Path | None = None,
        format: str = "auto",
    ) -> dict[str, Any]:
        """COCO metrics (12 numbers), per-class AP/AP50, precision/recall/F1 at ``conf`` and a confusion matrix;
        with ``save_dir`` also predictions.json, per_class.csv, pr_curve.png and confusion_matrix.png."""
        from rtdetr.data import load_index
        from rtdetr.engine.evaluator import validate

        index = load_index(data, split, format)  # type: ignore[arg-type]
        backend: Any = self.onnx if self.onnx is not None else self.model
        return validate(
            backend,
            index,
            image_size or self.image_size,
            batch,
            self.device,
            decoder_depth,
            conf,
            str(save_dir) if save_dir is not None else None,
            class_names=index.class_names,
            precision=self.precision if self.onnx is None else "fp32",
            channels_last=self.channels_last,
        )

    # -------------------------------------------------------------------------------------------------- train
    def train(
        self,
        data: str | Path | None = None,
        val: str | Path | None = None,
        recipe: str | Path | None = None,
        epochs: int | None = None,
        batch: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        output: str | Path | None = None,
        **train: Any,
    ) -> dict[str, Any]:
        """Train this model (a checkpoint's weights are the starting point; heads are re-initialised for another
        class count). ``train`` keys go to the ``train`` section (``lr=2e-4``, ``amp=True`` ...). The best
        weights are loaded into this object afterwards."""
        from rtdetr.engine.trainer import Trainer

        self._require_torch("train()")
        updates: dict[str, Any] = {"data": {}, "train": dict(train)}
        for section, key, value in (
            ("data", "train", data),
            ("data", "val", val),
            ("train", "epochs", epochs),
            ("train", "batch_size", batch),
            ("train", "output_dir", output),
        ):
            if value is not None:
                updates[section][key] = str(value) if isinstance(value, Path) else value
        if image_size is not None:
            updates["data"]["image_size"] = [image_size] * 2 if isinstance(image_size, int) else list(image_size)
        if recipe is None:  # this model's own architecture, at the run's input size (RunConfig derives it)
            assert self.model.config is not None
            updates["model"] = to_dict(self.model.config)
        cfg: RunConfig = load_recipe(recipe, updates=updates)
        if self.checkpoint is not None and cfg.init_from is None:  # the loaded weights are the starting point
            cfg = dataclasses.replace(cfg, init_from=str(self.checkpoint))
        if not cfg.data.train:
            raise ConfigError("train(): give data= (COCO json, YOLO data.yaml or VOC folder) or a recipe")
        result = Trainer(cfg).fit()
        best = Path(result["output_dir"]) / "best.pth"
        if best.is_file():  # keep this object's settings (device, precision, fuse...); take the trained weights
            self.model = load_model(best).to(self.device).eval()
            self.checkpoint = best
            names = read_checkpoint(best).get("class_names")
            if isinstance(names, list) and len(names) == self.num_classes:
                self.class_names = [str(n) for n in names]
        return result

    # ------------------------------------------------------------------------------------------------- export
    def export(
        self,
        format: str = "onnx",
        path: str | Path | None = None,
        image_size: tuple[int, int] | None = None,
        opset: int = 17,
        max_det: int = 300,
        decoder_depth: int | None = None,
        simplify: bool = False,
        check: bool = True,
        int8: bool = False,
        calibration: str | Path | None = None,
    ) -> dict[str, Any]:
        """Export the fused model with its post-processor.

        ``format="onnx"`` writes an ONNX graph (parity-checked against PyTorch by default); ``int8=True`` also
        writes ``<stem>_int8.onnx`` calibrated on up to 64 images from ``calibration`` (an image folder or any
        dataset path). ``format="openvino"`` converts the ONNX graph to OpenVINO IR, and with ``int8=True`` the
        int8 graph too (``<stem>_int8_openvino/``). Returns the report.
        """
        from rtdetr.export.onnx import export_onnx

        self._require_torch("export()")
        if format not in ("onnx", "openvino"):
            raise ValueError(f"unsupported export format {format!r}; supported: onnx, openvino")
        if int8 and calibration is None:
            raise ValueError("int8 export needs calibration images (calibration=<image folder or dataset>)")
        assert self.model.config is not None
        size = image_size or self.image_size
        default = Path(self.checkpoint.stem if self.checkpoint else self.model.config.name).with_suffix(".onnx")
        onnx_path = Path(path or default).with_suffix(".onnx")
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
        ).as_dict()
        if int8:
            from rtdetr.export.quantize import quantize_onnx_int8

            images = _calibration_images(calibration)  # type: ignore[arg-type]
            q = quantize_onnx_int8(onnx_path, onnx_path.with_name(f"{onnx_path.stem}_int8.onnx"), images, size)
            report["int8_path"] = str(q)
        if format == "openvino":
            from rtdetr.export.quantize import to_openvino

            report["openvino_path"] = str(to_openvino(onnx_path, onnx_path.parent / f"{onnx_path.stem}_openvino"))
            if int8:  # OpenVINO runs the calibrated QDQ graph in int8: the fastest CPU path measured here
                q_path = Path(report["int8_path"])
                report["openvino_int8_path"] = str(to_openvino(q_path, q_path.parent / f"{q_path.stem}_openvino"))
        return report

    def __repr__(self) -> str:
        return f"RTDETR({self.info()})"


def _calibration_images(source: str | Path, limit: int = 64) -> list[Path]:
    """Up to ``limit`` image paths from a folder or from any dataset path (COCO/YOLO/VOC, train split)."""
    from rtdetr.data import load_index
    from rtdetr.data.records import find_images

    p = Path(source)
    files = find_images(p) if p.is_dir() else []
    if not files:
        files = [r.path for r in load_index(p, "train").records]
    if not files:
        raise ValueError(f"{source}: no calibration images found")
    step = max(1, len(files) // limit)
    return files[::step][:limit]


def _saving(results: Iterator[Results], folder: Path) -> Iterator[Results]:
    folder.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(results):
        stem = Path(r.path).stem if r.path else f"image_{i:05d}"
        if r.frame is not None:
            stem = f"{stem}_{r.frame:06d}"
        r.save(folder / f"{stem}.jpg")
        r.save(folder / f"{stem}.json")
        yield r
