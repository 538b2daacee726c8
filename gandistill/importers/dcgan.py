"""``pytorch-dcgan``: the PyTorch DCGAN tutorial / pytorch/examples layout, an ``nn.Sequential`` named ``main``."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..config import DCGANConfig
from ..models import build_discriminator, build_generator
from ..safety import check_tensor
from .base import FORMATS, Imported, ImportFormat, ImportRefused, is_state_dict, load_exactly

# --- pytorch-dcgan: an nn.Sequential named "main" -------------------------------------------------------

_G_KEYS = ("netG_state_dict", "netG", "generator_state_dict", "generator", "G_state_dict", "G", "state_dict",
           "model")
_D_KEYS = ("netD_state_dict", "netD", "discriminator_state_dict", "discriminator", "D_state_dict", "D")
_MAIN_KEY = re.compile(r"main\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)")
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")



def _strip(state: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in state.items()}


def _main_layers(state: dict) -> list[tuple[int, str, dict[str, torch.Tensor]]] | None:
    """[(index, "conv" | "bn", params)] of a ``main.<i>.<param>`` state dict in index order, else None."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in _strip(state).items():
        m = _MAIN_KEY.fullmatch(key)
        if m is None:
            return None
        layers.setdefault(int(m[1]), {})[m[2]] = tensor
    out = []
    for index in sorted(layers):
        params = layers[index]
        if "running_mean" in params:
            out.append((index, "bn", params))
        elif "weight" in params and params["weight"].ndim == 4:
            out.append((index, "conv", params))
        else:
            return None
    return out or None


def _layout(layers) -> str:
    """'generator', 'discriminator' or 'unknown', by where the batch norms sit (netG: after every conv but
    the last, at i+1; netD: none after the first conv, and the last conv maps to 1 channel)."""
    kinds = [k for _, k, _ in layers]
    if len(kinds) >= 3 and kinds[-1] == "conv" and kinds[:-1] == ["conv", "bn"] * ((len(kinds) - 1) // 2):
        return "generator"
    if len(kinds) >= 3 and kinds[0] == "conv" and kinds[-1] == "conv" and layers[-1][2]["weight"].shape[0] == 1:
        return "discriminator"
    return "unknown"


def _find_main(obj) -> dict[str, tuple[str | None, dict]]:
    """{"generator"/"discriminator": (wrapper key, state dict)} of the ``main.*`` state dicts in ``obj``."""
    found: dict[str, tuple[str | None, dict]] = {}
    candidates = [(None, obj)] if is_state_dict(obj) else []
    if isinstance(obj, dict):
        candidates += [(k, obj[k]) for k in (*_G_KEYS, *_D_KEYS) if k in obj and is_state_dict(obj[k])]
    for key, state in candidates:
        layers = _main_layers(state)
        if layers is None:
            continue
        kind = _layout(layers)
        if kind != "unknown" and kind not in found:
            found[kind] = (key, state)
        elif kind == "unknown" and "unknown" not in found:
            found["unknown"] = (key, state)
    return found


def _detect_dcgan(obj) -> str | None:
    found = _find_main(obj)
    if not found:
        return None
    return ", ".join(f"{kind} ({key or 'top level'})" for kind, (key, _) in found.items())


def _check_source(layers, where: str) -> None:
    """Every tensor as the file holds it, before any arithmetic on it (folding a bias would cast an int64 one)."""
    for index, _, params in layers:
        for param, tensor in params.items():
            want = torch.int64 if param == "num_batches_tracked" else torch.float32
            check_tensor(f"main.{index}.{param}", tensor, want, where)


def _fold_bias(conv: dict, bn: dict) -> dict:
    """The batch norm's parameters with the convolution's bias taken into its running mean: in eval mode
    ``bn(x + b)`` is ``(x + b - mean) / sqrt(var + eps) * w + beta``, so ``mean - b`` gives the same images
    (and in train mode batch statistics cancel a per-channel constant anyway)."""
    if "bias" not in conv:
        return bn
    return {**bn, "running_mean": bn["running_mean"] - conv["bias"].to(bn["running_mean"].dtype)}


def _halving(channels: list[int]) -> bool:
    return all(a == 2 * b for a, b in zip(channels, channels[1:], strict=False))


def _dcgan_generator(layers, where: str) -> tuple[nn.Module, list[tuple[str, str, str]]]:
    _check_source(layers, where)
    convs = [p for _, k, p in layers if k == "conv"]
    bns = [p for _, k, p in layers if k == "bn"]
    idx = [i for i, k, _ in layers if k == "conv"]
    shapes = [list(c["weight"].shape) for c in convs]
    hidden = [s[1] for s in shapes[:-1]]
    expected = "4 or 5 transposed convolutions with 4x4 kernels, hidden channels halving (8b,4b,2b,b at 64 px; " \
               "4b,2b,b at 32 px), 1 or 3 image channels"
    ok = (len(convs) in (4, 5) and all(s[2:] == [4, 4] for s in shapes) and _halving(hidden)
          and all(a[1] == b[0] for a, b in zip(shapes, shapes[1:], strict=False)) and shapes[-1][1] in (1, 3)
          and all(bn["running_mean"].shape[0] == h for bn, h in zip(bns, hidden, strict=True)))
    if not ok:
        raise ValueError(f"{where}: a DCGAN generator layout whose shapes fit no known size: found transposed "
                         f"convolutions {shapes}; expected {expected}")
    config = DCGANConfig(resolution=64 if len(convs) == 5 else 32, channels=shapes[-1][1], z_dim=shapes[0][0],
                         base_channels=hidden[-1], image_bias="bias" in convs[-1])
    model = build_generator("dcgan", config)
    state, rows = {}, []
    for b, (conv, bn) in enumerate(zip(convs[:-1], bns, strict=True)):
        state[f"blocks.{b}.conv.weight"] = conv["weight"]
        rows.append((f"main.{idx[b]}", f"blocks.{b}.conv", f"ConvTranspose2d {list(conv['weight'].shape)}"
                     + (" + bias (folded into the batch norm's running mean)" if "bias" in conv else "")))
        bn = _fold_bias(conv, bn)
        for name in _BN_PARAMS:
            state[f"blocks.{b}.bn.{name}"] = bn.get(name, model.state_dict()[f"blocks.{b}.bn.{name}"])
        rows.append((f"main.{idx[b] + 1}", f"blocks.{b}.bn", f"BatchNorm2d {bn['running_mean'].shape[0]}"))
    state["to_img.weight"] = convs[-1]["weight"]
    if "bias" in convs[-1]:
        state["to_img.bias"] = convs[-1]["bias"]
    rows.append((f"main.{idx[-1]}", "to_img", f"ConvTranspose2d {shapes[-1]}"
                 + (" + bias" if "bias" in convs[-1] else "")))
    load_exactly(model, state, where)
    return model, rows


def _dcgan_discriminator(layers, where: str) -> tuple[nn.Module, list[tuple[str, str, str]]]:
    _check_source(layers, where)
    kinds = [k for _, k, _ in layers]
    convs = [p for _, k, p in layers if k == "conv"]
    bns = [p for _, k, p in layers if k == "bn"]
    idx = [i for i, k, _ in layers if k == "conv"]
    shapes = [list(c["weight"].shape) for c in convs]  # Conv2d weight: [out, in, k, k]
    hidden = [s[0] for s in shapes[:-1]]
    batch_norm = bool(bns)
    with_bias = ["bias" in c for c in convs]
    expected = ("a Conv2d then (Conv2d, BatchNorm2d) pairs, 4x4 kernels, channels doubling (b,2b,4b,8b at 64 px; "
                "b,2b,4b at 32 px) to one logit")
    ok = (len(convs) in (4, 5) and all(s[2:] == [4, 4] for s in shapes) and _halving(hidden[::-1])
          and all(a[0] == b[1] for a, b in zip(shapes, shapes[1:], strict=False)) and shapes[0][1] in (1, 3)
          and shapes[-1][0] == 1
          and (not batch_norm or kinds == ["conv"] + ["conv", "bn"] * (len(convs) - 2) + ["conv"])
          and all(bn["running_mean"].shape[0] == h for bn, h in zip(bns, hidden[1:], strict=False)))
    if not ok:
        raise ValueError(f"{where}: a DCGAN discriminator layout whose shapes fit no known size: found "
                         f"convolutions {shapes}{' with batch norm' if batch_norm else ''}; expected {expected}")
    # with batch norm ours has no convolution biases: a batch norm absorbs the bias before it, the first and
    # last convolution's would change the logits; without batch norm every convolution of ours has one
    unplaceable = [i for c, (i, has) in enumerate(zip(idx, with_bias, strict=True))
                   if (has and batch_norm and c in (0, len(convs) - 1)) or (not has and not batch_norm)]
    if unplaceable:
        what, ours = (("has a bias that no batch norm follows", "with batch norm has none there") if batch_norm
                      else ("has no bias", "without batch norm has one on every convolution"))
        raise ImportRefused(f"{where}: main.{unplaceable[0]} {what}; gandistill's DCGAN discriminator {ours}, "
                            f"so its logits would differ")
    config = DCGANConfig(resolution=64 if len(convs) == 5 else 32, channels=shapes[0][1], base_channels=hidden[0],
                         spectral_norm=False, disc_batch_norm=batch_norm)
    model = build_discriminator("dcgan", config)
    state, rows = {}, []
    defaults = model.state_dict()
    for c, conv in enumerate(convs[:-1]):
        state[f"convs.{c}.weight"] = conv["weight"]
        if not batch_norm:
            state[f"convs.{c}.bias"] = conv["bias"]
        folded = batch_norm and "bias" in conv
        rows.append((f"main.{idx[c]}", f"convs.{c}", f"Conv2d {shapes[c]}"
                     + (" + bias (folded into the batch norm's running mean)" if folded else "")))
        if batch_norm and c > 0:
            bn = _fold_bias(conv, bns[c - 1])
            for name in _BN_PARAMS:
                state[f"norms.{c - 1}.{name}"] = bn.get(name, defaults[f"norms.{c - 1}.{name}"])
            rows.append((f"main.{idx[c] + 1}", f"norms.{c - 1}", f"BatchNorm2d {bn['running_mean'].shape[0]}"))
    state["out.weight"] = convs[-1]["weight"]
    if not batch_norm:
        state["out.bias"] = convs[-1]["bias"]
    rows.append((f"main.{idx[-1]}", "out", f"Conv2d {shapes[-1]}"))
    load_exactly(model, state, where)
    return model, rows


def _convert_dcgan(obj, path: Path) -> Imported:
    found = _find_main(obj)
    if "generator" not in found:
        if "discriminator" in found:
            key = found["discriminator"][0]
            raise ValueError(f"{path}: holds a DCGAN discriminator ({key or 'top level'}: Conv2d layers down to "
                             f"one logit), expected a generator (netG: ConvTranspose2d layers up to an image)")
        key, state = found.get("unknown", (None, {}))
        kinds = [k for _, k, _ in (_main_layers(state) or [])]
        raise ValueError(f"{path}: an nn.Sequential 'main' ({key or 'top level'}) whose layers {kinds} are "
                         f"neither the DCGAN generator (conv, bn, ..., conv) nor its discriminator")
    g_key, g_state = found["generator"]
    generator, g_rows = _dcgan_generator(_main_layers(g_state), f"{path} ({g_key or 'top level'})")
    imported = Imported("pytorch-dcgan", path, generator, sources={"generator": g_key or "top level"},
                        mapping={"generator": g_rows})
    if "discriminator" in found:
        d_key, d_state = found["discriminator"]
        disc, d_rows = _dcgan_discriminator(_main_layers(d_state), f"{path} ({d_key})")
        if (disc.config.resolution, disc.config.channels) != (generator.config.resolution, generator.config.channels):
            raise ValueError(f"{path}: the discriminator ({d_key}) takes {disc.config.resolution} px, "
                             f"{disc.config.channels} channel(s), the generator draws {generator.config.resolution}"
                             f" px, {generator.config.channels} channel(s)")
        imported.discriminator, imported.sources["discriminator"] = disc, d_key
        imported.mapping["discriminator"] = d_rows
        imported.notes.append("the discriminator returns logits: the original's final Sigmoid is left out")
    imported.notes.append(f"z is [N, {generator.z_dim}] here; the original takes it as [N, {generator.z_dim}, 1, 1]")
    return imported


FORMATS.register("pytorch-dcgan", ImportFormat(
    "pytorch-dcgan", "PyTorch DCGAN tutorial / pytorch/examples dcgan: nn.Sequential 'main', netG and netD",
    _detect_dcgan, _convert_dcgan))


