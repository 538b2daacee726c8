"""Parameters, MACs, latency and throughput of generators."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(generator: nn.Module, batch: int = 1) -> int:
    """Multiply-accumulates per image of ``generator(z)``, counted by torch.utils.flop_counter (FLOPs / 2)."""
    z = torch.zeros(batch, generator.z_dim, device=next(generator.parameters()).device)
    was_training = generator.training
    generator.eval()
    with FlopCounterMode(display=False) as counter:
        generator(z)
    generator.train(was_training)
    return counter.get_total_flops() // 2 // batch
