"""StyleGAN2 as published (Karras et al. 2020), generator and residual discriminator, in plain PyTorch.

The networks of the paper as NVlabs' stylegan2-ada-pytorch (config "skip" generator, "resnet" discriminator)
and rosinality's stylegan2-pytorch implement them: an imported checkpoint draws the images of the original
code for the same z and fixed noise, to float32 rounding (tests/test_stylegan2.py, fixtures made with their
code). Parameter names follow NVlabs' module tree, so their tensors load as stored: equalised learning rate is
the run-time weight scaling (``weight * gain`` in forward), never baked into the weights.

Generator: z [N, z_dim] -> mapping (2nd-moment normalisation, ``mapping_layers`` fully connected layers at
``lr_mul``) -> w, broadcast to ``num_ws`` per-layer styles (w+, style mixing), truncated towards ``w_avg`` by
``truncation_psi`` up to ``truncation_cutoff`` -> synthesis: a learned 4x4 constant, per resolution a 2x
up-sampling modulated 3x3 convolution (transposed convolution + [1,3,3,1] FIR filter) and a modulated 3x3
convolution, each demodulated, with per-pixel noise of learned strength and bias + leaky ReLU (gain sqrt 2,
optional clamp), and a ToRGB whose outputs are summed up the resolutions (skip architecture). The image is the
raw sum, about [-1, 1] as in the originals (no tanh).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import StyleGAN2Config, scaled
from .layers import ChannelGroup, EqualLinear
from .ops import bias_act, fir_filter, upfirdn2d, upsample2d

NOISE_MODES = ("const", "random", "none")


def block_channels(config: StyleGAN2Config) -> dict[int, int]:
    """Channels at each resolution 4, 8, ..., R: ``layer_channels`` when given, else
    ``min(channel_base // r, channel_max)`` times ``width``."""
    res = [2**i for i in range(2, int(math.log2(config.resolution)) + 1)]
    if config.layer_channels:
        return dict(zip(res, config.layer_channels, strict=True))
    return {r: scaled(min(config.channel_base // r, config.channel_max), config.width) for r in res}


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: bool = False, fir: torch.Tensor | None = None) -> torch.Tensor:
    """x [N, I, H, W] convolved with ``weight`` [O, I, k, k] modulated per sample by ``styles`` [N, I].

    The non-fused form (scale the input, one shared convolution, scale the output): the same numbers as the
    grouped convolution of the fused form, with a batch dimension that stays dynamic for ONNX export.
    """
    x = x * styles[:, :, None, None]
    if up:  # transposed convolution, then the FIR filter (NVlabs conv2d_resample's up path)
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        x = upfirdn2d(x, fir, pad=(1, 1, 1, 1), gain=4.0)
    else:
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demodulate:
        # sum over i, k of (W[o, i, k] s[n, i])^2 = (s^2) @ (sum over k of W^2)^T
        dcoefs = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # [N, O]
        x = x * dcoefs[:, :, None, None]
    return x


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim]; tracks ``w_avg`` (the truncation centre) while training."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int, lr_mul: float, w_avg_beta: float):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation=True))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.training and self.w_avg_beta < 1:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if psi != 1:
            cut = self.num_ws if cutoff is None else cutoff
            ws = torch.cat([self.w_avg.lerp(ws[:, :cut], psi), ws[:, cut:]], dim=1)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (2x up-sampling if ``up``), noise, bias, leaky ReLU with gain sqrt 2."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 conv_clamp: float | None = None):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))  # [O, I, 3, 3]
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w), demodulate=True, up=self.up, fir=self.fir)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device,
                                dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return bias_act(x, self.bias, "lrelu", clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to the image channels, not demodulated, plus bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = 1.0 / math.sqrt(in_channels)  # equalised lr; make_student keeps the product per weight

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.scale, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: const (at 4 px) or the up-sampling conv0, then conv1, then ToRGB added to the image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None):
        super().__init__()
        self.resolution = resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))  # [C, 4, 4]
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(self, x, img, ws: list[torch.Tensor], noise_mode: str):
        # ws: this block's styles, one per conv, then the ToRGB's (the next block's first)
        if self.num_conv == 1:
            x = self.const.unsqueeze(0).repeat(ws[0].shape[0], 1, 1, 1)
        else:
            x = self.conv0(x, ws[0], noise_mode)
        x = self.conv1(x, ws[self.num_conv - 1], noise_mode)  # [N, C, r, r]
        y = self.torgb(x, ws[self.num_conv])
        img = y if img is None else upsample2d(img, self.fir) + y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        ch = block_channels(config)
        self.resolutions = sorted(ch)
        for r in self.resolutions:
            setattr(self, f"b{r}", SynthesisBlock(ch[r // 2] if r > 4 else 0, ch[r], config.w_dim, r,
                                                  config.channels, config.conv_clamp))
        self.num_ws = 2 * len(self.resolutions)  # one per conv (2 per block, 1 at 4 px) + the last ToRGB

    def forward(self, ws: torch.Tensor, noise_mode: str = "const"):
        x = img = None
        feats = {}
        w_idx = 0
        for r in self.resolutions:
            block = getattr(self, f"b{r}")
            x, img = block(x, img, [ws[:, w_idx + i] for i in range(block.num_conv + 1)], noise_mode)
            feats[f"b{r}"] = x
            w_idx += block.num_conv
        return img, feats


class StyleGAN2Generator(nn.Module):
    """z [N, z_dim] -> img [N, C, R, R] (about [-1, 1]); taps ``b4``, ``b8``, ... after each block's conv1.

    ``truncation_psi`` / ``truncation_cutoff`` and ``noise_mode`` ("const", "random", "none") are settings of the
    module that ``forward(z)`` uses, so that every gandistill path (distill, eval, export) calls it with z alone;
    ``synthesis(ws)`` takes w+ styles directly.
    """

    family = "stylegan2"

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(config.z_dim, config.w_dim, self.num_ws, config.mapping_layers,
                                      config.mapping_lr_mul, config.w_avg_beta)
        self.resolutions = self.synthesis.resolutions
        self.truncation_psi, self.truncation_cutoff = 1.0, None
        self.noise_mode = "const"
        self.taps = tuple(f"b{r}" for r in self.resolutions)
        self.distill_taps = self.taps
        self.tap_groups = {f"b{r}": f"b{r}.conv1" for r in self.resolutions}  # tap -> the group producing it
        self.lineage: dict | None = None

    def set_noise_mode(self, mode: str) -> None:
        """"const" (the stored noise: same image for the same z), "random" or "none"; "auto" means const."""
        mode = "const" if mode == "auto" else mode
        if mode not in NOISE_MODES:
            raise ValueError(f"noise mode must be auto, const, random or none, got {mode!r}")
        self.noise_mode = mode

    def set_truncation(self, psi: float = 1.0, cutoff: int | None = None) -> None:
        """Draw ``w_avg + psi * (w - w_avg)`` for the first ``cutoff`` styles (all when None)."""
        if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not math.isfinite(psi):
            raise ValueError(f"truncation psi must be a finite number, got {psi!r}")
        if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, int)
                                   or not 0 <= cutoff <= self.num_ws):
            raise ValueError(f"truncation cutoff must be None or an integer in [0, {self.num_ws}], got {cutoff!r}")
        self.truncation_psi, self.truncation_cutoff = float(psi), cutoff

    def forward_features(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {list(z.shape)}"
        ws = self.mapping(z, self.truncation_psi, self.truncation_cutoff)  # [N, num_ws, w_dim]
        return self.synthesis(ws, self.noise_mode)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_features(z)[0]

    def channel_groups(self) -> list[ChannelGroup]:
        """The synthesis channels make_student narrows; the mapping network is kept whole."""
        def consumer(layer: str) -> list[tuple[str, int]]:
            # a modulated conv consumes channels through its weight's input dim and its style affine's outputs
            return [(f"{layer}.weight", 1), (f"{layer}.affine.weight", 0), (f"{layer}.affine.bias", 0)]

        s = "synthesis."
        groups = [ChannelGroup("b4.const", (f"{s}b4.const", 0), ((f"{s}b4.const", 0), *consumer(f"{s}b4.conv1")))]
        for i, r in enumerate(self.resolutions):
            b = f"{s}b{r}"
            if r > 4:
                groups.append(ChannelGroup(f"b{r}.conv0", (f"{b}.conv0.weight", 0), (
                    (f"{b}.conv0.weight", 0), (f"{b}.conv0.bias", 0), *consumer(f"{b}.conv1"))))
            members = [(f"{b}.conv1.weight", 0), (f"{b}.conv1.bias", 0), *consumer(f"{b}.torgb")]
            if i + 1 < len(self.resolutions):
                members += consumer(f"{s}b{self.resolutions[i + 1]}.conv0")
            groups.append(ChannelGroup(f"b{r}.conv1", (f"{b}.conv1.weight", 0), tuple(members)))
        return groups


# --- discriminator -------------------------------------------------------------------------------------------

class Conv2dLayer(nn.Module):
    """Equalised-lr convolution, optionally after a 2x FIR down-sampling, then bias + activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", down: bool = False, conv_clamp: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.scale
        k = w.shape[-1]
        if self.down and k == 1:  # filter and subsample first, then the 1x1 convolution
            x = F.conv2d(upfirdn2d(x, self.fir, down=2, pad=(1, 1, 1, 1)), w)
        elif self.down:  # filter, then a strided convolution
            p = k // 2 + 1
            x = F.conv2d(upfirdn2d(x, self.fir, pad=(p, p, p, p)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=k // 2)
        act_gain = (math.sqrt(2.0) if self.activation == "lrelu" else 1.0) * gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, self.activation, gain=act_gain, clamp=clamp)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convolutions (the second down-sampling) plus a 1x1 down-sampling skip."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
                 conv_clamp: float | None):
        super().__init__()
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=True,
                                 conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None) -> torch.Tensor:
        if img is not None:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class MinibatchStd(nn.Module):
    """Appends ``num_channels`` channels holding the feature std across groups of ``group_size`` samples."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:  # where the originals fail (batch not a multiple of the group): the largest group that fits
            g -= 1
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # [N / g, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels: int, img_channels: int, mbstd_group: int, mbstd_channels: int,
                 conv_clamp: float | None):
        super().__init__()
        self.mbstd = MinibatchStd(mbstd_group, mbstd_channels)
        self.conv = Conv2dLayer(in_channels + mbstd_channels, in_channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = EqualLinear(in_channels * 16, in_channels, activation=True)
        self.out = EqualLinear(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1)))  # [N, 1]


class StyleGAN2Discriminator(nn.Module):
    """img [N, C, R, R] -> logits [N]; residual blocks b<R> ... b8, epilogue b4; taps ``d<res>`` per block output."""

    family = "stylegan2"

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        ch = block_channels(config)
        self.resolutions = sorted(ch, reverse=True)[:-1]  # R, R/2, ..., 8
        for r in self.resolutions:
            setattr(self, f"b{r}", DiscriminatorBlock(0 if r == config.resolution else ch[r], ch[r], ch[r // 2],
                                                      config.channels, config.conv_clamp))
        self.b4 = DiscriminatorEpilogue(ch[4], config.channels, config.mbstd_group, config.mbstd_channels,
                                        config.conv_clamp)
        self.taps = tuple(f"d{r // 2}" for r in self.resolutions)
        self.lineage: dict | None = None

    def forward_features(self, img: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = {}
        x = None
        for r in self.resolutions:
            x = getattr(self, f"b{r}")(x, img if r == self.config.resolution else None)
            feats[f"d{r // 2}"] = x  # [N, C, r/2, r/2]
        return self.b4(x).flatten(), feats  # [N]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.forward_features(img)[0]
