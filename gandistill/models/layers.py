"""Layers shared by the model families, and the channel-group contract that make_student relies on."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class ChannelGroup:
    """Hidden channels that one layer produces and later layers consume.

    ``score`` is the (tensor name, dim) whose slices rank the channels by importance (their L1 norm);
    ``members`` lists every parameter or buffer indexed along ``dim`` by this group's channels: the
    producer's weight, bias and norm statistics, and each consumer's input dimension.
    """

    name: str
    score: tuple[str, int]
    members: tuple[tuple[str, int], ...]


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (weights scaled at run time by 1/sqrt(fan_in))."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate; optional leaky ReLU with gain sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution with optional demodulation.

    Computed as input scaling -> shared convolution -> per-sample output scaling (StyleGAN2's
    non-fused form). It equals the grouped-convolution form but keeps the batch dimension dynamic,
    which ONNX export needs (a grouped conv would bake the batch size into ``groups``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.up = up

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # [N, in]
        weight = self.weight * self.scale  # [out, in, k, k]
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = x * styles[:, :, None, None]
        x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum_i,k (W[o,i,k] * s[n,i])^2 == (s^2) @ (sum_k W^2)^T
            dcoefs = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)  # [N, out]
            x = x * dcoefs[:, :, None, None]
        return x


class NoiseInjection(nn.Module):
    """Per-pixel noise with a learned strength.

    ``mode``: "random" draws fresh noise, "const" uses the stored buffer (same image for the same z),
    "none" adds nothing; "auto" is random in training mode and const in eval mode.
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.mode = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.mode
        if mode == "auto":
            mode = "random" if self.training else "const"
        if mode == "none":
            return x
        if mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const
        return x + noise * self.strength


def conv_transpose_native(conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``, through PyTorch's own CPU kernel rather than oneDNN when ``x`` is on the CPU.

    For a transposed convolution to few output channels (an image layer), oneDNN is 2-4x slower than the
    native kernel; measured on one thread of a 2-core AMD EPYC, batch 64, 16->32 px: 64->1 channels 8.3 ms vs
    2.0 ms, 16->1 channels 3.8 ms vs 1.4 ms. For wider outputs oneDNN wins (256->128 at 4->8 px: 13.8 ms vs
    44.4 ms), so only image layers use this. `scripts/bench.py --modes inference_mode,all_onednn` shows
    the effect on whole generators. oneDNN's switch is process-wide, so a convolution running in another
    thread at that moment may take the native kernel too; results agree to float32 rounding either way.
    Under torch.compile, export or on other devices the call is left as it is.
    """
    if x.device.type != "cpu" or torch.compiler.is_compiling() or not torch.backends.mkldnn.enabled:
        return conv(x)
    torch.backends.mkldnn.enabled = False
    try:
        return conv(x)
    finally:
        torch.backends.mkldnn.enabled = True


def minibatch_stddev(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append one channel holding the std of features across a group of samples (StyleGAN)."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    while n % g:  # largest group size <= group_size that divides the batch
        g -= 1
    y = x.reshape(g, -1, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [n / g]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)
