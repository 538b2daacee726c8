"""``stylegan2-lite``: gandistill's earlier small StyleGAN2-like generator and residual discriminator.

Kept so that the models made with it (pretrained/stylegan2-fmnist and its students) load and draw what their
cards say; ``stylegan2`` (models/stylegan2.py) is StyleGAN2 as published. Folders saved before the two were
split (config.json ``gandistill_format`` 1) that say ``stylegan2`` mean this family.

Generator: mapping network z -> w, learned constant 4x4 input, modulated 3x3 convolutions with
demodulation, per-layer noise, skip toRGB outputs summed across resolutions. The discriminator is
residual with minibatch standard deviation. Simplifications against the paper: bilinear up/down
sampling instead of FIR filters, one w for all layers (no style mixing), tanh on the output so that
images lie in [-1, 1] like every gandistill generator.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import StyleGAN2LiteConfig, scaled
from .layers import (
    SQRT2,
    ChannelGroup,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    NoiseInjection,
    minibatch_stddev,
)

_CHANNEL_MULT = {4: 4, 8: 4, 16: 2, 32: 1, 64: 1}


def _channels(config: StyleGAN2LiteConfig) -> dict[int, int]:
    res = [4 * 2**i for i in range(int(math.log2(config.resolution)) - 1)]
    return {r: scaled(config.base_channels * _CHANNEL_MULT[r], config.width) for r in res}


class StyledLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, demodulate=True, up=up)
        self.noise = NoiseInjection(resolution)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.noise(self.conv(x, w))
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * SQRT2


class ToRGB(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, num_layers: int):
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=0.01, activation=True) for i in range(num_layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)  # pixel norm
        for layer in self.layers:
            x = layer(x)
        return x


class StyleGAN2LiteGenerator(nn.Module):
    """z [N, z_dim] -> img [N, C, R, R] in [-1, 1]; taps ``b4``, ``b8``, ... after each resolution's block."""

    family = "stylegan2-lite"

    def __init__(self, config: StyleGAN2LiteConfig):
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        ch = _channels(config)
        self.resolutions = sorted(ch)
        self.mapping = MappingNetwork(config.z_dim, config.w_dim, config.mapping_layers)
        self.const = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        self.conv0 = nn.ModuleDict()  # "8", "16", ...: upsampling conv entering that resolution
        self.conv1 = nn.ModuleDict()  # "4", "8", ...: the second conv at that resolution
        self.torgb = nn.ModuleDict()
        prev = ch[4]
        for r in self.resolutions:
            if r > 4:
                self.conv0[str(r)] = StyledLayer(prev, ch[r], config.w_dim, r, up=True)
            self.conv1[str(r)] = StyledLayer(ch[r], ch[r], config.w_dim, r)
            self.torgb[str(r)] = ToRGB(ch[r], config.channels, config.w_dim)
            prev = ch[r]
        self.taps = tuple(f"b{r}" for r in self.resolutions)
        self.distill_taps = self.taps
        self.tap_groups = {f"b{r}": f"conv1.{r}" for r in self.resolutions}  # tap -> the channel group producing it
        self.lineage: dict | None = None

    def set_noise_mode(self, mode: str) -> None:
        """"auto" (random when training, const in eval), "random", "const" or "none"."""
        if mode not in ("auto", "random", "const", "none"):
            raise ValueError(f"noise mode must be auto, random, const or none, got {mode!r}")
        for m in self.modules():
            if isinstance(m, NoiseInjection):
                m.mode = mode

    def forward_features(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {list(z.shape)}"
        w = self.mapping(z)  # [N, w_dim]
        x = self.const.expand(z.shape[0], -1, -1, -1)
        feats, img = {}, None
        for r in self.resolutions:
            key = str(r)
            if r > 4:
                x = self.conv0[key](x, w)
            x = self.conv1[key](x, w)  # [N, C_r, r, r]
            feats[f"b{r}"] = x
            rgb = self.torgb[key](x, w)
            img = rgb if img is None else F.interpolate(img, scale_factor=2.0, mode="bilinear",
                                                        align_corners=False) + rgb
        return torch.tanh(img), feats

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_features(z)[0]

    def channel_groups(self) -> list[ChannelGroup]:
        def consumer(prefix: str) -> list[tuple[str, int]]:
            # a modulated conv consumes channels through its weight's input dim and its style affine
            return [(f"{prefix}.conv.weight", 1), (f"{prefix}.conv.affine.weight", 0),
                    (f"{prefix}.conv.affine.bias", 0)]

        groups = [ChannelGroup("const", ("const", 1), (("const", 1), *consumer("conv1.4")))]
        for i, r in enumerate(self.resolutions):
            if r > 4:
                p = f"conv0.{r}"
                groups.append(ChannelGroup(p, (f"{p}.conv.weight", 0), (
                    (f"{p}.conv.weight", 0), (f"{p}.bias", 0), *consumer(f"conv1.{r}"))))
            p = f"conv1.{r}"
            members = [(f"{p}.conv.weight", 0), (f"{p}.bias", 0), *consumer(f"torgb.{r}")]
            if i + 1 < len(self.resolutions):
                members += consumer(f"conv0.{self.resolutions[i + 1]}")
            groups.append(ChannelGroup(p, (f"{p}.conv.weight", 0), tuple(members)))
        return groups


class _DBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(self.conv1(self.conv0(x)), 2)
        return (self.skip(F.avg_pool2d(x, 2)) + y) / SQRT2


class StyleGAN2LiteDiscriminator(nn.Module):
    """img [N, C, R, R] -> logits [N]; residual blocks, minibatch stddev; taps ``d<res>`` per block input."""

    family = "stylegan2-lite"

    def __init__(self, config: StyleGAN2LiteConfig):
        super().__init__()
        self.config = config
        ch = _channels(config)
        self.resolutions = sorted(ch, reverse=True)[:-1]  # block inputs: R, R/2, ..., 8
        self.fromrgb = EqualConv2d(config.channels, ch[config.resolution], 1, activation=True)
        self.blocks = nn.ModuleList(_DBlock(ch[r], ch[r // 2]) for r in self.resolutions)
        self.conv = EqualConv2d(ch[4] + 1, ch[4], 3, activation=True)
        self.fc = EqualLinear(ch[4] * 16, ch[4], activation=True)
        self.out = EqualLinear(ch[4], 1)
        self.taps = tuple(f"d{r}" for r in self.resolutions) + ("d4",)
        self.lineage: dict | None = None

    def forward_features(self, img: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = {}
        x = self.fromrgb(img)
        for r, block in zip(self.resolutions, self.blocks, strict=False):
            feats[f"d{r}"] = x
            x = block(x)
        feats["d4"] = x
        x = self.conv(minibatch_stddev(x, self.config.mbstd_group))
        x = self.fc(x.flatten(1))
        return self.out(x).flatten(), feats  # [N]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.forward_features(img)[0]
