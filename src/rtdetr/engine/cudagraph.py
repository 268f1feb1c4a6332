"""Replay a module's forward pass as a CUDA graph for a fixed input shape: the whole network is launched as
one graph instead of hundreds of kernels, which removes the CPU launch overhead that dominates small batches on
a fast GPU.

The first call with a new ``(shape, dtype)`` warms the module up on a side stream and captures it; later calls
copy the input into the captured buffer and replay. Outputs are copies (the graph's own buffers are overwritten
by the next replay). A captured graph holds the weights' addresses: :class:`GraphedModule` is rebuilt by its
owner whenever the weights change (see :class:`rtdetr.engine.backend.TorchDetector`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["GraphedModule"]


class GraphedModule:
    """``module(x)`` replayed from CUDA graphs, one per input shape (inference only).

    Args:
        module: an eval-mode module on a CUDA device returning a dict of tensors.
        context: the autocast context to capture under (a new one per call: contexts are single-use).
        warmup: eager runs on a side stream before capture (lets cuDNN pick its algorithms).
    """

    def __init__(self, module: nn.Module, context: Callable[[], AbstractContextManager[Any]], warmup: int = 3) -> None:
        device = next(module.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a CUDA device; it is on {device}")
        self.module, self.context, self.warmup, self.device = module, context, warmup, device
        self._graphs: dict[tuple[tuple[int, ...], torch.dtype], tuple[Any, Tensor, dict[str, Tensor]]] = {}

    def __getattr__(self, name: str) -> Any:  # set_decoder_depth, config...: the wrapped module's
        return getattr(self.module, name)

    def _capture(self, x: Tensor) -> tuple[Any, Tensor, dict[str, Tensor]]:
        static_x = x.clone()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(self.warmup):
                with self.context():
                    self.module(static_x)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode(), self.context():
            static_out = self.module(static_x)
        return graph, static_x, static_out

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x)
        graph, static_x, static_out = self._graphs[key]
        static_x.copy_(x)
        graph.replay()
        return {k: v.clone() for k, v in static_out.items()}

    def reset(self) -> None:
        """Drop the captured graphs (e.g. after the decoder depth changed)."""
        self._graphs.clear()
