"""DCGAN generator and discriminator (Radford et al. 2016), 32x32 or 64x64, 1 or 3 channels."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..config import DCGANConfig, scaled
from .layers import ChannelGroup, conv_transpose_native


def block_channels(config: DCGANConfig) -> dict[int, int]:
    """Resolution -> channels of the generator block producing it (discriminator mirrors it)."""
    b = config.base_channels
    mult = {4: 8, 8: 4, 16: 2, 32: 1} if config.resolution == 64 else {4: 4, 8: 2, 16: 1}
    if config.layer_channels:
        return dict(zip(mult, config.layer_channels, strict=True))
    return {res: scaled(b * m, config.width) for res, m in mult.items()}


class _GBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, first: bool):
        super().__init__()
        # the first block maps z (as a 1x1 map) to 4x4; later blocks double the resolution
        stride, padding = (1, 0) if first else (2, 1)
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class DCGANGenerator(nn.Module):
    """z [N, z_dim] -> img [N, C, R, R] in [-1, 1]; taps ``b4``, ``b8``, ... and ``rgb<R>`` (pre-tanh)."""

    family = "dcgan"

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        channels = block_channels(config)
        self.resolutions = sorted(channels)
        blocks, prev = [], config.z_dim
        for i, res in enumerate(self.resolutions):
            blocks.append(_GBlock(prev, channels[res], first=i == 0))
            prev = channels[res]
        self.blocks = nn.ModuleList(blocks)
        self.to_img = nn.ConvTranspose2d(prev, config.channels, 4, 2, 1, bias=config.image_bias)
        self.taps = tuple(f"b{r}" for r in self.resolutions) + (f"rgb{config.resolution}",)
        # the hidden taps the feature loss matches by default; the pre-tanh output is left out because its
        # magnitude grows as the teacher trains (mean square 24 at step 4750, 105 at step 10000)
        self.distill_taps = self.taps[:-1]
        self.tap_groups = {f"b{r}": f"b{r}" for r in self.resolutions}  # tap -> the channel group producing it
        self.lineage: dict | None = None
        self.apply(_dcgan_init)

    def forward_features(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {list(z.shape)}"
        feats = {}
        x = z[:, :, None, None]
        for res, block in zip(self.resolutions, self.blocks, strict=False):
            x = block(x)  # [N, C_res, res, res]
            feats[f"b{res}"] = x
        x = conv_transpose_native(self.to_img, x)  # few output channels: native kernel beats oneDNN
        feats[f"rgb{self.config.resolution}"] = x
        return torch.tanh(x), feats

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_features(z)[0]

    def channel_groups(self) -> list[ChannelGroup]:
        groups = []
        for i, res in enumerate(self.resolutions):
            p = f"blocks.{i}"
            nxt = f"blocks.{i + 1}.conv.weight" if i + 1 < len(self.blocks) else "to_img.weight"
            members = [(f"{p}.conv.weight", 1)] + [(f"{p}.bn.{n}", 0) for n in
                                                   ("weight", "bias", "running_mean", "running_var")]
            members.append((nxt, 0))  # ConvTranspose2d weight is [in, out, k, k]
            groups.append(ChannelGroup(f"b{res}", (f"{p}.conv.weight", 1), tuple(members)))
        return groups


class DCGANInference(nn.Module):
    """A DCGAN generator's eval-mode function rewritten for inference: the same images to float32 rounding.

    Batch norm (running statistics) is folded into the convolution before it, the first block (a transposed
    convolution of a 1x1 map) is one matrix product, activations run in place and tanh is 2 sigmoid(2x) - 1.
    Each rewrite takes away work that costs a narrow student more, relative to its multiply-adds, than a wide
    teacher. Measured on one thread of a 2-core AMD EPYC at batch 64: the first layer as a product 0.22 vs
    1.32 ms for w0.25 and 0.86 vs 5.2 ms for the teacher; PyTorch's CPU tanh 0.23 ms on 64x1x32x32 vs 0.10
    through sigmoid; one pass over each activation instead of three. ``scripts/bench.py`` compares whole
    generators (mode ``for_inference``). The weights are copied when this is built (later changes to the
    generator do not reach it) and take no gradients: it is for sampling, evaluation, timing and export.
    ``channels_last``: run the hidden layers in that memory format (faster for wide layers on some CPUs).
    """

    family = "dcgan"

    def __init__(self, generator: DCGANGenerator, channels_last: bool = False):
        super().__init__()
        if not isinstance(generator, DCGANGenerator):
            raise TypeError(f"DCGANInference needs a DCGANGenerator, got {type(generator).__name__}")
        self.config, self.z_dim = generator.config, generator.z_dim
        self.lineage = generator.lineage
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if hasattr(generator, "source"):
            self.source = generator.source
        with torch.no_grad():
            first, *rest = [_fold_batch_norm(b) for b in generator.blocks]
            weight, bias = first  # [z_dim, C, 4, 4], [C]
            self.first_channels = weight.shape[1]
            self.first_weight = _frozen(weight.reshape(self.z_dim, -1))  # [z_dim, C*16], C-major like the conv
            self.first_bias = _frozen(bias.repeat_interleave(16))
            self.weights = nn.ParameterList([_frozen(w) for w, _ in rest])
            self.biases = nn.ParameterList([_frozen(b) for _, b in rest])
            self.to_img = copy.deepcopy(generator.to_img).requires_grad_(False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {list(z.shape)}"
        x = torch.addmm(self.first_bias, z, self.first_weight).relu_()
        x = x.view(z.shape[0], self.first_channels, 4, 4).contiguous(memory_format=self.memory_format)
        for weight, bias in zip(self.weights, self.biases, strict=True):
            x = F.conv_transpose2d(x, weight, bias, stride=2, padding=1).relu_()  # doubles the resolution
        x = conv_transpose_native(self.to_img, x.contiguous())  # [N, channels, R, R], pre-tanh
        return torch.sigmoid(x.mul_(2.0)).mul_(2.0).sub_(1.0)  # tanh(x)


def _fold_batch_norm(block: _GBlock) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the transposed convolution that equals ``block.bn(block.conv(x))`` in eval mode."""
    bn = block.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [out]
    weight = block.conv.weight * scale[None, :, None, None]  # ConvTranspose2d weight is [in, out, k, k]
    return weight, bn.bias - bn.running_mean * scale


def _frozen(t: torch.Tensor) -> nn.Parameter:
    # every tensor given here is computed from the generator's, never a view of them: no clone needed
    return nn.Parameter(t.detach().contiguous(), requires_grad=False)


class DCGANDiscriminator(nn.Module):
    """img [N, C, R, R] -> logits [N]; taps ``d<res>`` after each strided convolution (and its batch norm).

    ``disc_batch_norm`` gives the PyTorch DCGAN example's layout: batch norm after every strided convolution
    but the first, no convolution biases; its sigmoid is left out (logits, as for every discriminator here).
    """

    family = "dcgan"

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        channels = block_channels(config)
        sn = spectral_norm if config.spectral_norm else (lambda m: m)
        bias = not config.disc_batch_norm
        convs, norms, prev, self.tap_resolutions = [], [], config.channels, []
        res = config.resolution
        for i, r in enumerate(sorted(channels, reverse=True)):  # 16, 8, 4 for 32x32 input
            convs.append(sn(nn.Conv2d(prev, channels[r], 4, 2, 1, bias=bias)))
            if config.disc_batch_norm and i > 0:
                norms.append(nn.BatchNorm2d(channels[r]))
            prev, res = channels[r], res // 2
            self.tap_resolutions.append(res)
        self.convs = nn.ModuleList(convs)
        if norms:  # only then: the default layout's state dict keeps its keys
            self.norms = nn.ModuleList(norms)
        self.out = sn(nn.Conv2d(prev, 1, 4, 1, 0, bias=bias))
        self.taps = tuple(f"d{r}" for r in self.tap_resolutions)
        self.lineage: dict | None = None
        self.apply(_dcgan_init)

    def forward_features(self, img: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = {}
        x = img
        norms = [None] + list(getattr(self, "norms", [])) if self.config.disc_batch_norm else [None] * len(self.convs)
        for res, conv, norm in zip(self.tap_resolutions, self.convs, norms, strict=True):
            x = conv(x)
            x = F.leaky_relu(norm(x) if norm is not None else x, 0.2)
            feats[f"d{res}"] = x
        return self.out(x).flatten(), feats  # [N]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.forward_features(img)[0]


def _dcgan_init(m: nn.Module) -> None:
    # N(0, 0.02) as in the DCGAN paper; spectral norm wraps the weight in a parametrization
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
        nn.init.normal_(weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
