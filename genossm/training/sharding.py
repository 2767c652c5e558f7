"""FSDP for the training modules: Lightning's ModelParallelStrategy over PyTorch's ``fully_shard`` (FSDP2).

A genossm step runs its micro-batches' backward passes inside ``training_step`` (manual optimisation). Lightning's
FSDPStrategy calls ``training_step`` inside the forward of the FSDP unit it wraps the whole module in, and FSDP
rejects a backward there. Under ModelParallelStrategy nothing wraps ``training_step``: every residual block is its
own FSDP2 unit (gathered for its forward and its backward, then freed again), and the rest (embedding, final norm,
head) the root unit. Parameters, gradients and the optimizer's state are sharded over the ranks.

``torch.distributed`` is imported only where sharding happens, so a PyTorch build without it still trains on one
device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import Tensor, nn

from genossm.models.backbone import Block

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh


def fsdp_strategy(devices: int) -> ModelParallelStrategy:
    """Data parallel over ``devices`` with sharded parameters; a checkpoint holds the full state in one file, which
    rank 0 writes (as under DDP), and ``--resume`` shards it again."""
    return ModelParallelStrategy(data_parallel_size=devices, tensor_parallel_size=1, save_distributed_checkpoint=False)


def shard(model: nn.Module, mesh: DeviceMesh) -> None:
    """Make every residual block of ``model`` an FSDP unit over ``mesh``, then the model itself (what is left); a
    model already sharded is left as it is (Lightning may call ``configure_model`` again). Sharding makes new
    parameter objects, so attributes set on the old ones are lost (the optimiser finds A_log and D by name)."""
    from torch.distributed.fsdp import fully_shard

    if is_sharded(model):
        return
    for block in model.modules():
        if isinstance(block, Block):
            fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model``'s parameters are split over ranks (FSDP2)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The whole state dict of ``model``: its own, or when it is sharded gathered onto rank 0's CPU (a collective:
    every rank must call it; the others get an empty dict)."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
