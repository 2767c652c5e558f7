"""A training micro-batch replayed from a CUDA graph: forward, loss and backward as one launch.

A step of a small model on short sequences (fine-tuning on reads, pretraining at a small token budget) is
host-bound: the 1.4M model's step at 256 x 256 tokens issues 903 kernels, which its host launches in 66 ms while
the GPU runs them in 19 ms (H100). Captured once per input shape and replayed, the micro-batch costs one launch.

The captured region ends with the gradients added into the parameters' ``.grad`` tensors, which must therefore stay
the same tensors: the optimiser zeroes them in place instead of setting them to None. Capture runs two warm-up
micro-batches first (they compile the kernels and allocate the gradients; their gradients are zeroed again), so a
graph is only captured when the accumulated gradients are still zero: at a step's first micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
MAX_GRAPH_TOKENS = 1 << 18  # above this a micro-batch keeps the GPU busy on its own: launches are hidden
WARMUP = 2


def graphs_apply(device: torch.device, world_size: int, plain_memory: bool, tokens: int, enabled: bool) -> bool:
    """Whether a micro-batch of ``tokens`` tokens is replayed from a graph: on one CUDA device, in the plain memory
    mode (checkpointed and segmented backward passes stay eager), for micro-batches small enough to be host-bound."""
    return enabled and device.type == "cuda" and world_size == 1 and plain_memory and tokens <= MAX_GRAPH_TOKENS


class GraphedMicroBatches:
    """``loss_fn(input_ids, labels) -> (summed loss, count)`` and the backward of ``loss * scale`` into ``model``'s
    gradients, replayed from one CUDA graph per input shape (all graphs share one memory pool)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        self.model, self.loss_fn = model, loss_fn
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[Tensor, ...], tuple[Tensor, Tensor]]] = {}
        self._pool = None

    def __call__(self, input_ids: Tensor, labels: Tensor, scale: Tensor, first: bool) -> tuple[Tensor, Tensor] | None:
        """(summed loss, count) of one micro-batch, its gradients added; ``first``: the step's first micro-batch
        (no gradient accumulated yet), where a graph for a new shape can be captured. Returns None when this shape
        has no graph and cannot get one now; the caller then runs the micro-batch eagerly."""
        key = (tuple(input_ids.shape), input_ids.dtype, tuple(labels.shape), labels.dtype)
        if key not in self._graphs:
            if not first:
                return None
            self._graphs[key] = self._capture(input_ids, labels, scale)
        graph, inputs, outputs = self._graphs[key]
        for static, value in zip(inputs, (input_ids, labels, scale), strict=True):
            static.copy_(value)
        graph.replay()
        return outputs

    def _step(self, input_ids: Tensor, labels: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        loss, count = self.loss_fn(input_ids, labels)
        (loss * scale).backward()
        return loss.detach(), count

    def _capture(self, input_ids: Tensor, labels: Tensor, scale: Tensor) -> tuple:
        inputs = (input_ids.clone(), labels.clone(), scale.detach().clone().reshape(()))
        device_type = input_ids.device.type
        # autocast's cache of cast weights would outlive the capture; inside the graph every cast is recomputed
        autocast = torch.autocast(
            device_type,
            dtype=torch.get_autocast_dtype(device_type),
            enabled=torch.is_autocast_enabled(device_type),
            cache_enabled=False,
        )
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), autocast:
            for _ in range(WARMUP):  # compiles the kernels and allocates .grad outside the graph
                self._step(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.model.zero_grad(set_to_none=False)  # the warm-ups' gradients; the tensors stay for the graph to feed
        graph = torch.cuda.CUDAGraph()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self._pool), autocast:
            outputs = self._step(*inputs)
        return graph, inputs, outputs
