"""One interface for every way of running a detector: the PyTorch model, an ONNX Runtime session, an OpenVINO
compiled model. Callers (predictor, evaluator, service, benchmark, Python API) use :class:`Detector` and never
ask which backend they hold.

Every backend maps a prepared batch (``images`` ``[B, 3, H, W]`` float in ``[0, 1]``, ``sizes`` ``[B, 2]``
original (w, h)) to per image ``{"labels": [K], "boxes": [K, 4] xyxy pixels, "scores": [K]}`` sorted by score,
in two timed steps: :meth:`Detector.infer` (the network; an exported graph includes its post-processing) and
:meth:`Detector.postprocess` (top-k and scaling for PyTorch, unpacking for a graph).
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from rtdetr.engine.hardware import choose_precision
from rtdetr.models.postprocess import ClassFilter, PostProcessor, class_mask

__all__ = ["COMPILE_MODES", "Detector", "FastPath", "TorchDetector", "as_detector", "open_detector"]

#: ``torch.compile`` modes a detector accepts
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: graphs one compiled forward may hold (batch sizes x decoder depths) before dynamo would fall back to eager;
#: its own default is 8, which four batch sizes at two depths already fill
COMPILED_GRAPHS = 64


@runtime_checkable
class Detector(Protocol):
    """What every backend offers."""

    kind: str
    """``"pytorch"``, ``"onnxruntime"`` or ``"openvino"``."""
    precision: str
    channels_last: bool
    class_names: list[str] | None
    """Names stored with the model (None when it has none)."""
    exported: bool
    """An exported graph: its input size, decoder depth, precision and detections per image were fixed at export."""

    @property
    def num_classes(self) -> int | None: ...

    @property
    def image_size(self) -> tuple[int, int] | None:
        """The input ``(height, width)`` the model was built or exported for (None: not fixed)."""

    @property
    def decoder_layers(self) -> int | None:
        """Decoder layers the model has (an exported graph: as its export recorded them, None where it did not)."""

    @property
    def decoder_depth(self) -> int | None:
        """Decoder layers run (an exported graph: those baked in, None where its export did not record them)."""

    def set_decoder_depth(self, depth: int | None) -> None:
        """Run ``depth`` decoder layers (None keeps the current depth); ValueError where it cannot change."""

    def infer(self, images: Tensor, sizes: Tensor) -> Any: ...

    def postprocess(
        self, raw: Any, sizes: Tensor, max_det: int = 300, classes: ClassFilter = None
    ) -> list[dict[str, Tensor]]:
        """Per image at most ``max_det`` detections by score; with ``classes`` (ids for every image, or one entry
        per image: ids, or None for every class), the best of those classes over all queries (an exported graph
        ranks them so in :meth:`detect`, through its ``class_mask`` input; here, on the output of :meth:`infer`,
        and in a graph without that input, they are those of the detections it was exported to give)."""

    def detect(
        self, images: Tensor, sizes: Tensor, max_det: int = 300, classes: ClassFilter = None
    ) -> list[dict[str, Tensor]]: ...

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA), so that timings measure the work and not its launch."""


class FastPath:
    """Inference precision (fp32, bf16/fp16 autocast; ``"auto"`` chooses for the device, see
    :func:`rtdetr.engine.hardware.choose_precision`) and memory layout for a PyTorch model."""

    def __init__(
        self, precision: str = "fp32", channels_last: bool = False, device: torch.device | str = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.precision, self.reason = choose_precision(precision, self.device)
        self.channels_last = channels_last

    def prepare(self, model: nn.Module, owned: bool = False) -> nn.Module:
        """``model`` in the memory layout; an ``owned`` copy (the fused one) also gets its convolution and linear
        weights in the autocast dtype once, which autocast would otherwise cast on every call (r18vd at 640 in
        bf16 on an AMX Xeon, batch 1: 133 -> 111 ms per image; the same outputs bit for bit)."""
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if owned and self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            for m in model.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    m.weight.data = m.weight.data.to(dtype)  # keeps the layout (channels_last) it was given
                    if m.bias is not None:
                        m.bias.data = m.bias.data.to(dtype)
        return model

    def input(self, x: Tensor) -> Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def context(self) -> Any:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)


class TorchDetector:
    """A PyTorch :class:`~rtdetr.models.RTDETR` behind the :class:`Detector` interface.

    Args:
        model: the model (moved to ``device``). Inference runs it in eval mode; a model in training mode gets each
            module's flag back afterwards, so a training loop can evaluate it.
        fuse: run a ``deploy()``-fused copy (Conv+BN folded, RepVGG merged: same outputs, faster). The copy is
            rebuilt whenever a parameter or buffer of ``model`` changes, and follows its decoder depth.
        precision, channels_last: see :class:`FastPath`; :attr:`precision` is the one chosen and
            :attr:`precision_reason` says why.
        compile: ``torch.compile`` the inference module in this mode (``"default"``, ``"reduce-overhead"``,
            ``"max-autotune"``...). The first call per batch size compiles (about 30 s for r18vd on 2 CPU cores);
            a batch smaller than one already compiled at the same decoder depth is padded to the smallest such size
            instead (a predictor's last batch, a service's partly filled one: see :meth:`warm_up`).
        cuda_graph: replay the forward pass as a CUDA graph per input shape (CUDA only; see
            :class:`rtdetr.engine.cudagraph.GraphedModule`).
    """

    kind = "pytorch"
    exported = False

    def __init__(
        self,
        model: nn.Module,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        fuse: bool = False,
        class_names: list[str] | None = None,
        compile: str | None = None,
        cuda_graph: bool = False,
    ) -> None:
        self.device = torch.device(device)
        if compile is not None and compile not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}; got {compile!r}")
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; this detector runs on {self.device}")
        if cuda_graph and compile is not None:
            raise ValueError("use either cuda_graph or compile (compile='reduce-overhead' captures CUDA graphs itself)")
        self.compile, self.cuda_graph = compile, cuda_graph
        self._runner: tuple[tuple[int, int], Any, set[int]] | None = None
        self._sealed: tuple[int, int] | None = None  # the runner key warm_up(seal=True) left compiled
        self.model = model.to(self.device)
        self.fast = FastPath(precision, channels_last, self.device)
        self.precision, self.channels_last, self.fuse = self.fast.precision, channels_last, fuse
        self.precision_reason = self.fast.reason
        self.class_names = class_names
        self._fused: tuple[tuple[int, ...], nn.Module] | None = None
        self._post: dict[int, PostProcessor] = {}
        self._laid_out = False

    @property
    def config(self) -> Any:
        return getattr(self.model, "config", None)

    @property
    def num_classes(self) -> int | None:
        return int(self.config.num_classes) if self.config is not None else None

    @property
    def image_size(self) -> tuple[int, int] | None:
        size = self.config.eval_spatial_size if self.config is not None else None
        return (int(size[0]), int(size[1])) if size else None

    @property
    def decoder_layers(self) -> int:
        return int(self.model.num_decoder_layers)  # type: ignore[arg-type]

    @property
    def decoder_depth(self) -> int:
        return int(self.model.decoder_depth)  # type: ignore[arg-type]

    def set_decoder_depth(self, depth: int | None) -> None:
        if depth is not None:
            self.model.set_decoder_depth(depth)  # type: ignore[operator]

    def module(self) -> nn.Module:
        """The module :meth:`infer` runs: the model, or with ``fuse`` its cached fused copy."""
        if not self.fuse or getattr(self.model, "deployed", False):
            if not self._laid_out:  # the memory layout is set once, not on every batch
                self.fast.prepare(self.model)
                self._laid_out = True
            return self.model
        key = (
            id(self.model),
            *(p._version for p in self.model.parameters()),
            *(b._version for b in self.model.buffers()),
        )
        if self._fused is None or self._fused[0] != key:
            fused = copy.deepcopy(self.model).eval().deploy()  # type: ignore[operator]
            self._fused = (key, self.fast.prepare(fused, owned=True))
        fused = self._fused[1]
        fused.set_decoder_depth(self.decoder_depth)  # type: ignore[operator]
        return fused

    def runner(self) -> Any:
        """What :meth:`infer` calls: :meth:`module`, compiled or graphed when asked (rebuilt when the module or
        its decoder depth changes; after ``warm_up(seal=True)``, the plain module at another decoder depth)."""
        module = self.module()
        if self.compile is None and not self.cuda_graph:
            return module
        key = (id(module), self.decoder_depth)
        if self._sealed is not None and key != self._sealed:
            return module
        if self._runner is None or self._runner[0] != key:
            if self.cuda_graph:
                from rtdetr.engine.cudagraph import GraphedModule

                run: Any = GraphedModule(module, self.fast.context)
            else:
                run = torch.compile(module, mode=self.compile, dynamic=False)
            self._runner = (key, run, set())
        return self._runner[1]

    def _plan(self, n: int) -> tuple[Any, int, bool]:
        """What runs ``n`` images, at which batch size, and whether it is compiled: with ``compile``, the compiled
        module at the smallest size already compiled at this decoder depth that holds them (padding costs less than
        compiling another graph); once sealed by :meth:`warm_up`, the plain module where that would compile.
        Otherwise :meth:`runner` at ``n``."""
        run = self.runner()
        if self.compile is None or self._runner is None or run is not self._runner[1]:
            return run, n, False
        b = min((s for s in self._runner[2] if s >= n), default=n)
        if self._sealed is not None and b not in self._runner[2]:
            return self.module(), n, False
        return run, b, True

    def warm_up(self, batch_sizes: list[int], image_size: tuple[int, int], seal: bool = False) -> None:
        """Compile (or capture) the forward pass for each of ``batch_sizes`` at ``image_size`` (h, w) now, at the
        current decoder depth, so that no request waits for it; a no-op without ``compile`` or ``cuda_graph``.
        With ``seal`` nothing compiles afterwards: another decoder depth, or a batch larger than any of these,
        runs the plain module (a service must not stall every request for the half minute a compile takes)."""
        if self.compile is None and not self.cuda_graph:
            return
        for b in sorted(set(batch_sizes)):
            images = torch.zeros(b, 3, *image_size)
            self.infer(images, torch.tensor([image_size[::-1]] * b))
        if seal and self.compile is not None and self._runner is not None:
            self._sealed = self._runner[0]

    def _compile_settings(self) -> Any:
        """Dynamo's and inductor's settings while a compiled module runs (it compiles at its first call per shape):
        room for :data:`COMPILED_GRAPHS` graphs; on the CPU, weights frozen as constants, so that they are packed
        for oneDNN once and activations fuse into the convolutions (r18vd 640 on the AMX Xeon, network time: bf16
        55 ms against 90 eager, fp32 230 against 280; fp32 compiled without freezing took 318)."""
        if self.compile is None:
            return contextlib.nullcontext()
        from torch._dynamo import config as dynamo_config
        from torch._inductor import config as inductor_config

        stack = contextlib.ExitStack()
        limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        stack.enter_context(dynamo_config.patch({limit: max(COMPILED_GRAPHS, getattr(dynamo_config, limit))}))
        if self.device.type == "cpu":
            stack.enter_context(inductor_config.patch(freezing=True))
        return stack

    def infer(self, images: Tensor, sizes: Tensor) -> dict[str, Tensor]:
        """Raw outputs ``pred_logits`` ``[B, Q, C]``, ``pred_boxes`` ``[B, Q, 4]`` (cxcywh in ``[0, 1]``), fp32."""
        n = int(images.shape[0])
        run, b, compiled = self._plan(n)
        if b > n:  # zero images after the real ones: in eval mode no image sees another
            images = torch.cat([images, images.new_zeros(b - n, *images.shape[1:])])
        elif compiled and torch.is_inference_mode_enabled() and not images.is_inference():
            images = images.clone()  # dynamo guards on the kind of tensor: a padded batch is an inference tensor
        modes = [(m, m.training) for m in self.model.modules()] if self.model.training else []
        self.model.eval()  # a model in training mode would normalise by the batch's own statistics
        try:
            with self.fast.context(), self._compile_settings():
                out = run(self.fast.input(images))
        finally:
            for m, mode in modes:  # each module's own flag back (a training loop's frozen BN stays in eval)
                m.training = mode
        if compiled and self._runner is not None:
            self._runner[2].add(b)
        return {k: v[:n].float() for k, v in out.items() if k in ("pred_logits", "pred_boxes")}

    def postprocess(
        self, raw: dict[str, Tensor], sizes: Tensor, max_det: int = 300, classes: ClassFilter = None
    ) -> list[dict[str, Tensor]]:
        num_classes = int(raw["pred_logits"].shape[-1])
        if max_det not in self._post:
            self._post[max_det] = PostProcessor(num_classes, num_top_queries=max_det)
        mask = class_mask(classes, num_classes, len(sizes))
        return self._post[max_det](raw, sizes.to(self.device), mask)

    def detect(
        self, images: Tensor, sizes: Tensor, max_det: int = 300, classes: ClassFilter = None
    ) -> list[dict[str, Tensor]]:
        return self.postprocess(self.infer(images, sizes), sizes, max_det, classes)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def as_detector(model: Any, device: torch.device | str = "cpu", **kwargs: Any) -> Detector:
    """``model`` itself when it already is a :class:`Detector`, else a :class:`TorchDetector` around it."""
    if isinstance(model, nn.Module):
        return TorchDetector(model, device, **kwargs)
    if not isinstance(model, Detector):
        raise TypeError(f"expected an RTDETR model or a Detector, got {type(model).__name__}")
    return model


def open_detector(
    source: str | Path,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    channels_last: bool = False,
    fuse: bool = True,
    threads: int | None = None,
    compile: str | None = None,
    cuda_graph: bool = False,
    **overrides: Any,
) -> Detector:
    """Open any model file or variant name: ``.onnx`` (ONNX Runtime), ``.xml`` (OpenVINO), else a PyTorch
    checkpoint (ours, official ``.pth``, HF ``.safetensors``) or a variant name (random weights).

    ``overrides`` are model-config overrides (PyTorch only; with ``num_classes`` mismatching heads load
    non-strictly). ``threads`` sets an exported graph's thread count. ``precision="auto"`` picks the fastest
    precision that keeps accuracy on this device (:func:`rtdetr.engine.hardware.choose_precision`).
    """
    from rtdetr.convert.checkpoint import load_model_and_names
    from rtdetr.export.runtime import OnnxRuntimeDetector, OpenVinoDetector

    text = str(source)
    if text.endswith((".onnx", ".xml")):
        if overrides:
            raise ValueError(f"an exported graph takes no model overrides, got {sorted(overrides)}")
        if precision not in ("auto", "fp32") or channels_last or compile or cuda_graph:
            raise ValueError(
                "precision, channels_last, compile and cuda_graph apply to PyTorch models; a graph's precision is "
                "fixed at export (rtdetr export --int8 for int8; OpenVINO picks bf16 itself on CPUs that have it)"
            )
        if text.endswith(".xml"):
            return OpenVinoDetector(text, threads)
        return OnnxRuntimeDetector(text, threads=threads)
    model, names = load_model_and_names(text, strict="num_classes" not in overrides, **overrides)
    return TorchDetector(model.eval(), device, precision, channels_last, fuse, names, compile, cuda_graph)
