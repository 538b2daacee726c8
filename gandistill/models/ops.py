"""Plain-PyTorch ops that StyleGAN2 implementations usually compile: FIR up/down-sampling and bias + activation.

Written from the published definitions (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN", and the upfirdn semantics of scipy.signal.upfirdn): they run on any device, need no compiler, trace
to ONNX, and draw what the CUDA kernels of NVlabs and rosinality draw to float32 rounding (tests/test_stylegan2.py
checks it against tensors made with their code).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def fir_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The separable 2-D low-pass filter of ``taps`` (outer product), normalised to sum 1: [K, K]."""
    t = torch.as_tensor(taps, dtype=torch.float32)
    if t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"filter taps must be a non-empty 1-D sequence, got shape {list(t.shape)}")
    f = torch.outer(t, t)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (or crop, where negative), convolve with ``f``, keep every ``down``-th pixel.

    ``x`` [N, C, H, W]; ``f`` [K, K]; ``pad`` = (left, right, top, bottom) after upsampling; ``gain`` scales the
    result (``up ** 2`` keeps the mean of an upsampled image).
    """
    _, c, h, w = x.shape
    if up > 1:  # a zero after every pixel, in both directions
        x = x.reshape(-1, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(-1, c, h * up, w * up)
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    kernel = (f * gain).to(x.dtype).flip([0, 1])  # convolution, not correlation (a no-op for symmetric taps)
    x = F.conv2d(x, kernel[None, None].repeat(c, 1, 1, 1), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling with the FIR filter ``f`` (the skip path's image upsampling): [N, C, H, W] -> [N, C, 2H, 2W]."""
    k = f.shape[0]
    return upfirdn2d(x, f, up=2, pad=((k + 1) // 2, (k - 2) // 2, (k + 1) // 2, (k - 2) // 2), gain=4.0)


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None, alpha: float = 0.2) -> torch.Tensor:
    """``x + bias`` (along dim 1), then ``act`` ("linear" or "lrelu"), times ``gain`` (default: sqrt 2 for lrelu,
    1 for linear), clamped to [-clamp, clamp] when ``clamp`` is given."""
    if bias is not None:
        x = x + bias.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, alpha)
        gain = SQRT2 if gain is None else gain
    elif act != "linear":
        raise ValueError(f"activation must be linear or lrelu, got {act!r}")
    if gain is not None and gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
