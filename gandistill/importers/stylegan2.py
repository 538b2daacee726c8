"""StyleGAN2 checkpoints people have -> the ``stylegan2`` family, every tensor placed or the import refused.

- ``rosinality-stylegan2``: rosinality's stylegan2-pytorch ``torch.save`` dicts (``g_ema``, ``d``, ``args``,
  optimiser states; ``latent_avg`` in converted files). Sizes come from the tensors, so forks with other channel
  tables import too. rosinality keeps no tracked mean w: ``latent_avg`` is used where the file has one, else
  ``w_avg`` is the mean w of 4096 z drawn with seed 0 (what its ``mean_latent(4096)`` estimates).
- ``nvlabs-pkl``: NVlabs stylegan2-ada-pytorch / stylegan3 training snapshots and network pickles (``G_ema``
  preferred, ``D`` where present), read by the restricted unpickler (importers/unpickle.py): the pickled state
  and constructor attributes are read as data, the embedded source code is never run. Their parameter names
  are ours (models/stylegan2.py follows NVlabs' module tree).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import StyleGAN2Config
from ..models import build_discriminator, build_generator
from ..models.ops import fir_filter
from .base import FORMATS, Imported, ImportFormat, ImportRefused, is_state_dict, load_exactly
from .unpickle import Placeholder, placeholder_tensors

W_AVG_SAMPLES, W_AVG_SEED = 4096, 0


# --- sizes from tensors ----------------------------------------------------------------------------------------

def _channel_rule(ch: dict[int, int], where: str) -> tuple[int, int]:
    """(channel_base, channel_max) with ``min(channel_base // r, channel_max) == ch[r]`` for every resolution."""
    cmax = max(ch.values())
    below = [r for r in sorted(ch) if ch[r] < cmax]
    base = ch[below[0]] * below[0] if below else cmax * max(ch)
    if any(min(base // r, cmax) != c for r, c in ch.items()):
        raise ImportRefused(f"{where}: channels per resolution {dict(sorted(ch.items()))} follow no "
                            f"min(channel_base // r, channel_max) rule; the stylegan2 family cannot hold them")
    return base, cmax


def _generator_config(state: dict[str, torch.Tensor], where: str, **fields) -> StyleGAN2Config:
    """The config of a generator state dict in our names; ``fields``: what the source states (lr_mul, clamp...)."""
    res = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
    layers = sum(1 for k in state if re.fullmatch(r"mapping\.fc\d+\.weight", k))
    if not res or res[0] != 4 or res != [2**i for i in range(2, 2 + len(res))] or not layers:
        raise ImportRefused(f"{where}: no StyleGAN2 synthesis blocks b4, b8, ... with a mapping network found")
    ch = {r: state[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res}
    base, cmax = _channel_rule(ch, where)
    fc0 = state["mapping.fc0.weight"]
    try:
        return StyleGAN2Config(resolution=res[-1], channels=state[f"synthesis.b{res[-1]}.torgb.weight"].shape[0],
                               z_dim=fc0.shape[1], w_dim=fc0.shape[0], mapping_layers=layers, channel_base=base,
                               channel_max=cmax, **fields)
    except ValueError as e:
        raise ImportRefused(f"{where}: sizes the stylegan2 family does not take ({e})") from None


def _discriminator_config(state: dict[str, torch.Tensor], g_config: StyleGAN2Config | None, where: str,
                          **fields) -> StyleGAN2Config:
    res = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"b(\d+)\.conv0\.weight", k)))
    if not res or "b4.conv.weight" not in state:
        raise ImportRefused(f"{where}: no residual StyleGAN2 discriminator blocks found")
    resolution = res[-1]
    ch = {r: state[f"b{r}.conv0.weight"].shape[0] for r in res}
    ch[4] = state["b4.conv.weight"].shape[0]
    base, cmax = _channel_rule(ch, where)
    rgb = state.get(f"b{resolution}.fromrgb.weight")
    if rgb is None:
        raise ImportRefused(f"{where}: the first block b{resolution} has no fromrgb layer (not the resnet layout)")
    keep = {} if g_config is None else {k: getattr(g_config, k) for k in ("z_dim", "w_dim", "mapping_layers")}
    try:
        return StyleGAN2Config(resolution=resolution, channels=rgb.shape[1], channel_base=base, channel_max=cmax,
                               **keep, **fields)
    except ValueError as e:
        raise ImportRefused(f"{where}: sizes the stylegan2 family does not take ({e})") from None


def _check_filter(tensor: torch.Tensor, gain: float, name: str, where: str) -> None:
    want = fir_filter() * gain
    if tensor.shape != want.shape or not torch.allclose(tensor.float().cpu(), want, atol=1e-6):
        raise ImportRefused(f"{where}: {name} is not the [1,3,3,1] FIR filter the stylegan2 family uses "
                            f"(shape {list(tensor.shape)}); refusing rather than drawing other images")


def _rows(model: nn.Module, theirs_for: dict[str, str]) -> list[tuple[str, str, str]]:
    """Report rows per module: (their module, our module, 'Param [shape], ...')."""
    by_module: dict[str, list[str]] = {}
    for name, tensor in model.state_dict().items():
        module, _, param = name.rpartition(".")
        by_module.setdefault(module, []).append(f"{param} {list(tensor.shape)}")
    def theirs(module: str) -> str:
        parent, _, last = module.rpartition(".")
        if module in theirs_for:
            return theirs_for[module]
        return f"{theirs_for[parent]} ({last})" if parent in theirs_for else module

    return [(theirs(m), m, ", ".join(p)) for m, p in by_module.items()]


def _place(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    expected = model.state_dict()
    for name, tensor in state.items():
        if name in expected and tensor.shape != expected[name].shape:
            raise ImportRefused(f"{where}: {name} has shape {list(tensor.shape)}, the inferred config implies "
                                f"{list(expected[name].shape)}")
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise ImportRefused(f"{where}: cannot place every tensor (unplaced: {', '.join(extra[:3]) or 'none'}; "
                            f"missing: {', '.join(missing[:3]) or 'none'})")
    load_exactly(model, state, where)


# --- rosinality stylegan2-pytorch ------------------------------------------------------------------------------

def _detect_rosinality(obj) -> str | None:
    if not isinstance(obj, dict):
        return None
    for key in ("g_ema", "g"):
        if is_state_dict(obj.get(key)) and any(k.startswith(("style.", "to_rgb1.")) for k in obj[key]):
            return f"{key} (rosinality stylegan2-pytorch Generator)"
    return None


def _rosinality_styled(src: dict, theirs: str, ours: str, out: dict, used: set, where: str, up: bool) -> None:
    def take(name):
        used.add(f"{theirs}.{name}")
        return src[f"{theirs}.{name}"]

    out[f"{ours}.weight"] = take("conv.weight")[0]  # [1, O, I, k, k] -> [O, I, k, k]
    out[f"{ours}.affine.weight"] = take("conv.modulation.weight")
    out[f"{ours}.affine.bias"] = take("conv.modulation.bias")
    out[f"{ours}.noise_strength"] = take("noise.weight").reshape(())
    out[f"{ours}.bias"] = take("activate.bias")
    if up:
        _check_filter(take("conv.blur.kernel"), 4.0, f"{theirs}.conv.blur.kernel", where)


def _rosinality_torgb(src: dict, theirs: str, ours: str, out: dict, used: set, where: str) -> None:
    for name in ("conv.weight", "conv.modulation.weight", "conv.modulation.bias", "bias"):
        used.add(f"{theirs}.{name}")
    out[f"{ours}.weight"] = src[f"{theirs}.conv.weight"][0]  # [1, C, I, 1, 1] -> [C, I, 1, 1]
    out[f"{ours}.affine.weight"] = src[f"{theirs}.conv.modulation.weight"]
    out[f"{ours}.affine.bias"] = src[f"{theirs}.conv.modulation.bias"]
    out[f"{ours}.bias"] = src[f"{theirs}.bias"].flatten()  # [1, C, 1, 1] -> [C]
    if f"{theirs}.upsample.kernel" in src:
        used.add(f"{theirs}.upsample.kernel")
        _check_filter(src[f"{theirs}.upsample.kernel"], 4.0, f"{theirs}.upsample.kernel", where)


def _rosinality_map(build, src: dict, where: str, network: str) -> tuple[dict, dict[str, str]]:
    """``build`` fills our-named tensors, the source keys it used and our module -> theirs (for the report); a
    missing key or a tensor left unplaced refuses the import."""
    out, used, theirs_for = {}, set(), {}
    try:
        build(src, where, out, used, theirs_for)
    except KeyError as e:
        raise ImportRefused(f"{where}: a rosinality {network} without {e.args[0]}: not the layout of "
                            f"stylegan2-pytorch's {network.capitalize()}") from None
    unplaced = sorted(set(src) - used)
    if unplaced:
        raise ImportRefused(f"{where}: cannot place {', '.join(unplaced[:3])} (a modified rosinality {network}?)")
    return out, theirs_for


def _rosinality_generator(src: dict, where: str, out: dict, used: set, theirs_for: dict) -> None:
    """Everything but w_avg (rosinality keeps none)."""
    n_mlp = sum(1 for k in src if re.fullmatch(r"style\.\d+\.weight", k))
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"], out[f"mapping.fc{i}.bias"] = src[f"style.{i + 1}.weight"], \
            src[f"style.{i + 1}.bias"]
        used |= {f"style.{i + 1}.weight", f"style.{i + 1}.bias"}
        theirs_for[f"mapping.fc{i}"] = f"style.{i + 1}"
    out["synthesis.b4.const"] = src["input.input"][0]  # [1, C, 4, 4] -> [C, 4, 4]
    used.add("input.input")
    theirs_for["synthesis.b4"] = "input"
    _rosinality_styled(src, "conv1", "synthesis.b4.conv1", out, used, where, up=False)
    _rosinality_torgb(src, "to_rgb1", "synthesis.b4.torgb", out, used, where)
    theirs_for.update({"synthesis.b4.conv1": "conv1", "synthesis.b4.torgb": "to_rgb1"})
    noise_of = {0: "synthesis.b4.conv1"}
    num_blocks = sum(1 for k in src if re.fullmatch(r"to_rgbs\.\d+\.bias", k))
    for k in range(num_blocks):
        b = f"synthesis.b{8 * 2**k}"
        for j, conv in ((2 * k, "conv0"), (2 * k + 1, "conv1")):
            _rosinality_styled(src, f"convs.{j}", f"{b}.{conv}", out, used, where, up=conv == "conv0")
            theirs_for[f"{b}.{conv}"] = f"convs.{j}"
            noise_of[j + 1] = f"{b}.{conv}"
        _rosinality_torgb(src, f"to_rgbs.{k}", f"{b}.torgb", out, used, where)
        theirs_for[f"{b}.torgb"] = f"to_rgbs.{k}"
    for i, layer in noise_of.items():
        out[f"{layer}.noise_const"] = src[f"noises.noise_{i}"][0, 0]  # [1, 1, r, r] -> [r, r]
        used.add(f"noises.noise_{i}")


def _rosinality_discriminator(src: dict, where: str, out: dict, used: set, theirs_for: dict) -> None:
    n_blocks = sum(1 for k in src if re.fullmatch(r"convs\.\d+\.conv1\.0\.weight", k))
    resolution = 4 * 2**n_blocks

    def move(theirs: str, ours: str) -> None:
        out[ours] = src[theirs]
        used.add(theirs)

    move("convs.0.0.weight", f"b{resolution}.fromrgb.weight")
    move("convs.0.1.bias", f"b{resolution}.fromrgb.bias")
    theirs_for[f"b{resolution}.fromrgb"] = "convs.0"
    for j in range(1, n_blocks + 1):
        r = resolution >> (j - 1)
        move(f"convs.{j}.conv1.0.weight", f"b{r}.conv0.weight")
        move(f"convs.{j}.conv1.1.bias", f"b{r}.conv0.bias")
        move(f"convs.{j}.conv2.1.weight", f"b{r}.conv1.weight")
        move(f"convs.{j}.conv2.2.bias", f"b{r}.conv1.bias")
        move(f"convs.{j}.skip.1.weight", f"b{r}.skip.weight")
        for blur in (f"convs.{j}.conv2.0.kernel", f"convs.{j}.skip.0.kernel"):
            used.add(blur)
            _check_filter(src[blur], 1.0, blur, where)
        theirs_for.update({f"b{r}.conv0": f"convs.{j}.conv1", f"b{r}.conv1": f"convs.{j}.conv2",
                           f"b{r}.skip": f"convs.{j}.skip"})
    move("final_conv.0.weight", "b4.conv.weight")
    move("final_conv.1.bias", "b4.conv.bias")
    for i, ours in ((0, "fc"), (1, "out")):
        move(f"final_linear.{i}.weight", f"b4.{ours}.weight")
        move(f"final_linear.{i}.bias", f"b4.{ours}.bias")
        theirs_for[f"b4.{ours}"] = f"final_linear.{i}"
    theirs_for["b4.conv"] = "final_conv"


@torch.no_grad()
def estimate_w_avg(generator: nn.Module, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> torch.Tensor:
    """The mean w of ``samples`` z drawn with ``seed`` (mapping only, no truncation)."""
    z = torch.randn(samples, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    mapping = generator.mapping
    was_training = mapping.training
    mapping.eval()
    w = mapping(z)[:, 0]
    mapping.train(was_training)
    return w.mean(dim=0)


def _convert_rosinality(obj, path: Path) -> Imported:
    key = "g_ema" if is_state_dict(obj.get("g_ema")) else "g"
    where = f"{path} ({key})"
    src = {k.removeprefix("module."): v for k, v in obj[key].items()}
    state, theirs_for = _rosinality_map(_rosinality_generator, src, where, "generator")
    config = _generator_config(state, where)
    generator = build_generator("stylegan2", config)
    latent_avg = obj.get("latent_avg")
    if isinstance(latent_avg, torch.Tensor) and latent_avg.numel() == config.w_dim:
        state["mapping.w_avg"] = latent_avg.reshape(-1)
        w_avg_note = "w_avg is the file's latent_avg"
    else:
        state["mapping.w_avg"] = torch.zeros(config.w_dim)
        w_avg_note = None
    _place(generator, state, where)
    if w_avg_note is None:
        generator.mapping.w_avg.copy_(estimate_w_avg(generator))
        w_avg_note = (f"w_avg (truncation centre) is the mean w of {W_AVG_SAMPLES} z drawn with seed {W_AVG_SEED}: "
                      f"rosinality keeps none, its generate.py estimates one the same way with mean_latent(4096)")
    theirs_for["mapping"] = "style (w_avg: see note)"
    imported = Imported("rosinality-stylegan2", path, generator, sources={"generator": key},
                        mapping={"generator": _rows(generator, theirs_for)}, notes=[w_avg_note])
    if key == "g":
        imported.notes.append("no g_ema in the file: the raw generator g was imported, not its moving average")
    if is_state_dict(obj.get("d")):
        d_src = {k.removeprefix("module."): v for k, v in obj["d"].items()}
        d_state, d_theirs = _rosinality_map(_rosinality_discriminator, d_src, f"{path} (d)", "discriminator")
        d_config = _discriminator_config(d_state, config, f"{path} (d)")
        if (d_config.resolution, d_config.channels) != (config.resolution, config.channels):
            raise ImportRefused(f"{path}: the discriminator takes {d_config.resolution} px, {d_config.channels} "
                                f"channel(s), the generator draws {config.resolution} px, {config.channels}")
        disc = build_discriminator("stylegan2", d_config)
        _place(disc, d_state, f"{path} (d)")
        imported.discriminator, imported.sources["discriminator"] = disc, "d"
        imported.mapping["discriminator"] = _rows(disc, d_theirs)
    args = obj.get("args")
    if args is not None:
        imported.notes.append(f"args ({type(args).__name__}) read as data; sizes were taken from the tensors")
    imported.notes.append("noise: rosinality's randomize_noise=False is noise mode 'const' here (the default)")
    return imported


FORMATS.register("rosinality-stylegan2", ImportFormat(
    "rosinality-stylegan2", "rosinality stylegan2-pytorch checkpoint: g_ema (or g), d, args, latent_avg",
    _detect_rosinality, _convert_rosinality))


# --- NVlabs pickles ----------------------------------------------------------------------------------------------

def _attrs(obj: Placeholder, path: str = "") -> dict[str, Any]:
    """The pickled attributes of the module at ``path`` (dotted) below ``obj``; {} where there is none."""
    for name in filter(None, path.split(".")):
        state = obj.state if isinstance(obj.state, dict) else {}
        obj = (state.get("_modules") or {}).get(name)
        if not isinstance(obj, Placeholder):
            return {}
    return obj.state if isinstance(obj.state, dict) else {}


def _number(value, default=None):
    """A pickled number (Python or numpy scalar) as float; ``default`` for None."""
    if value is None:
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ImportRefused(f"expected a number in the pickled attributes, got {type(value).__name__}") from None
    return out


def _nvlabs_checks(net: Placeholder, tensors: dict, where: str, kind: str) -> dict[str, torch.Tensor]:
    """Refuse layouts the family does not hold; check and drop the FIR filter buffers; return what to place."""
    top = _attrs(net)
    c_dim = top.get("c_dim", 0) or 0
    if c_dim:
        raise ImportRefused(f"{where}: a conditional model (c_dim {c_dim}); gandistill's stylegan2 draws from z "
                            f"alone and does not import class-conditional networks")
    if kind == "generator" and any(k.startswith("synthesis.input.") or ".L0_" in f".{k}" for k in tensors):
        raise ImportRefused(f"{where}: a StyleGAN3 (alias-free) generator; only StyleGAN2 networks import "
                            f"(stylegan3's repository also writes StyleGAN2 pickles: those import)")
    state = {}
    for name, tensor in tensors.items():
        if name.endswith("resample_filter"):
            _check_filter(tensor, 1.0, name, where)
        else:
            state[name] = tensor
    for name in {k.rsplit(".", 1)[0] for k in state}:
        a = _attrs(net, name)
        arch = a.get("architecture")
        if arch is not None and arch != ("skip" if kind == "generator" else "resnet"):
            raise ImportRefused(f"{where}: {name} uses architecture {arch!r}; the stylegan2 family holds the "
                                f"'skip' generator and the 'resnet' discriminator of the paper")
        if a.get("use_noise") is False:
            raise ImportRefused(f"{where}: {name} was built with use_noise=False; not supported")
        act = a.get("activation")
        if act is not None and act not in ("lrelu", "linear"):
            raise ImportRefused(f"{where}: {name} uses activation {act!r}; the stylegan2 family uses lrelu")
    return state


def _detect_nvlabs(obj) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("G_ema"), Placeholder):
        return f"G_ema ({obj['G_ema'].class_name}, NVlabs pickle)"
    if isinstance(obj, dict) and isinstance(obj.get("G"), Placeholder):
        return f"G ({obj['G'].class_name}, NVlabs pickle)"
    return None


def _clamp(net: Placeholder, layer: str) -> float | None:
    return _number(_attrs(net, layer).get("conv_clamp"))


def _convert_nvlabs(obj, path: Path) -> Imported:
    key = "G_ema" if isinstance(obj.get("G_ema"), Placeholder) else "G"
    g = obj[key]
    where = f"{path} ({key})"
    state = _nvlabs_checks(g, placeholder_tensors(g), where, "generator")
    beta = _attrs(g, "mapping").get("w_avg_beta")
    config = _generator_config(state, where, mapping_lr_mul=_number(_attrs(g, "mapping.fc0").get("bias_gain"), 0.01),
                               conv_clamp=_clamp(g, "synthesis.b4.conv1"), w_avg_beta=_number(beta, 1.0))
    generator = build_generator("stylegan2", config)
    _place(generator, state, where)
    imported = Imported("nvlabs-pkl", path, generator, sources={"generator": key},
                        mapping={"generator": _rows(generator, {})})
    if key == "G":
        imported.notes.append("no G_ema in the pickle: the raw generator G was imported, not its moving average")
    fp16 = [r for r in generator.resolutions if _attrs(g, f"synthesis.b{r}").get("use_fp16")]
    if fp16:
        imported.notes.append(f"blocks {', '.join(f'{r} px' for r in fp16)} ran in float16 in the original on a "
                              f"GPU; here they run in float32 (the original's force_fp32=True)")
    d = obj.get("D")
    if isinstance(d, Placeholder):
        d_where = f"{path} (D)"
        d_state = _nvlabs_checks(d, placeholder_tensors(d), d_where, "discriminator")
        epilogue = _attrs(d, "b4")
        if epilogue.get("cmap_dim"):
            raise ImportRefused(f"{d_where}: a projection discriminator (cmap_dim {epilogue['cmap_dim']}); not "
                                f"supported")
        mbstd = _attrs(d, "b4.mbstd")
        d_config = _discriminator_config(
            d_state, config, d_where, mapping_lr_mul=config.mapping_lr_mul,
            conv_clamp=_clamp(d, f"b{config.resolution}.conv0"),
            mbstd_group=int(_number(mbstd.get("group_size"), 4)),
            mbstd_channels=int(_number(mbstd.get("num_channels"), 1)))
        if (d_config.resolution, d_config.channels) != (config.resolution, config.channels):
            raise ImportRefused(f"{path}: D takes {d_config.resolution} px, {d_config.channels} channel(s), the "
                                f"generator draws {config.resolution} px, {config.channels}")
        disc = build_discriminator("stylegan2", d_config)
        _place(disc, d_state, d_where)
        imported.discriminator, imported.sources["discriminator"] = disc, "D"
        imported.mapping["discriminator"] = _rows(disc, {})
    imported.notes.append("read through the restricted unpickler: the pickle's embedded source code was not run")
    imported.notes.append("noise: NVlabs noise_mode='const' is noise mode 'const' here (the default)")
    if math.isclose(config.w_avg_beta, 1.0):
        imported.notes.append("the pickle tracks no w_avg (w_avg_beta None): truncation centres on its stored w_avg")
    return imported


FORMATS.register("nvlabs-pkl", ImportFormat(
    "nvlabs-pkl", "NVlabs stylegan2-ada-pytorch / stylegan3 pickle with G_ema (and D), read without running code",
    _detect_nvlabs, _convert_nvlabs))
