"""Model families: one file per family with its generator and discriminator together."""
from __future__ import annotations

from torch import nn

from ..config import MODEL_CONFIGS, model_config
from ..registry import Registry
from .classifier import FashionCNN
from .dcgan import DCGANDiscriminator, DCGANGenerator, DCGANInference
from .dcgan import block_channels as _dcgan_blocks
from .stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from .stylegan2 import block_channels as _stylegan2_blocks
from .stylegan2_lite import StyleGAN2LiteDiscriminator, StyleGAN2LiteGenerator

GENERATORS: Registry[type[nn.Module]] = Registry("generator family")
DISCRIMINATORS: Registry[type[nn.Module]] = Registry("discriminator family")
GENERATORS.register("dcgan", DCGANGenerator)
GENERATORS.register("stylegan2", StyleGAN2Generator)
GENERATORS.register("stylegan2-lite", StyleGAN2LiteGenerator)
DISCRIMINATORS.register("dcgan", DCGANDiscriminator)
DISCRIMINATORS.register("stylegan2", StyleGAN2Discriminator)
DISCRIMINATORS.register("stylegan2-lite", StyleGAN2LiteDiscriminator)
CLASSIFIERS: Registry[type[nn.Module]] = Registry("classifier family")
CLASSIFIERS.register("fmnist-cnn", FashionCNN)
# a family's generator rewritten for inference (same images to float32 rounding); families without one are
# served as they are
INFERENCE_FORMS: Registry[type[nn.Module]] = Registry("inference form")
INFERENCE_FORMS.register("dcgan", DCGANInference)
# a family's channels per block (resolution -> count), for the families whose blocks can be sized one by one
# (the config's ``layer_channels``): make_student's per-block widths and the MACs budget read them
BLOCK_CHANNELS: Registry = Registry("family with per-block widths")
BLOCK_CHANNELS.register("dcgan", _dcgan_blocks)
BLOCK_CHANNELS.register("stylegan2", _stylegan2_blocks)
KINDS = {"generator": GENERATORS, "discriminator": DISCRIMINATORS, "classifier": CLASSIFIERS}


def _config(family: str, config):
    if config is None or isinstance(config, dict):
        return model_config(family, **(config or {}))
    if type(config) is not MODEL_CONFIGS.get(family):
        raise ValueError(f"config of type {type(config).__name__} does not fit family {family!r}")
    return config


def build_generator(family: str, config=None, **kwargs) -> nn.Module:
    """A generator of ``family``; pass a config dataclass or its fields as keywords."""
    cls = GENERATORS.get(family)
    return cls(_config(family, config if config is not None else kwargs))


def build_discriminator(family: str, config=None, **kwargs) -> nn.Module:
    """A discriminator of ``family``; pass a config dataclass or its fields as keywords."""
    cls = DISCRIMINATORS.get(family)
    return cls(_config(family, config if config is not None else kwargs))


def build_model(kind: str, family: str, config=None, **kwargs) -> nn.Module:
    """A model of ``kind`` ("generator", "discriminator" or "classifier") and ``family``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    cls = KINDS[kind].get(family)
    return cls(_config(family, config if config is not None else kwargs))


def for_inference(generator: nn.Module) -> nn.Module:
    """The generator as gandistill serves it: its family's inference form when it has one, else itself.

    The inference form draws the same images as ``generator`` in eval mode (to float32 rounding), faster,
    from a copy of its current weights, and takes no gradients. Used for evaluation, profiling and export.
    """
    family = getattr(generator, "family", None)
    # exactly the family's class: a subclass may compute something else in forward()
    if family in INFERENCE_FORMS and type(generator) is GENERATORS.get(family):
        return INFERENCE_FORMS.get(family)(generator)
    others = [DISCRIMINATORS.get(f) for f in DISCRIMINATORS] + [CLASSIFIERS.get(f) for f in CLASSIFIERS]
    if isinstance(generator, tuple(others)):
        raise ValueError(f"for_inference needs a generator, got a {kind_of(generator)}")
    return generator  # another family, an inference form already, or a user's own module


def block_channels(family: str, config) -> dict[str, int]:
    """Channels of each block of a ``family`` generator with ``config``, lowest resolution first, keyed ``b4``,
    ``b8``, ...: the blocks that per-block widths (``layer_channels``) size."""
    if family not in BLOCK_CHANNELS:
        raise ValueError(f"per-block widths are for the {' and '.join(BLOCK_CHANNELS)} families; "
                         f"{family!r} takes one width for every layer")
    return {f"b{r}": c for r, c in BLOCK_CHANNELS.get(family)(config).items()}


def kind_of(model: nn.Module) -> str:
    """"generator", "discriminator" or "classifier"."""
    for kind, registry in KINDS.items():
        if isinstance(model, tuple(registry.get(f) for f in registry)):
            return kind
    raise ValueError(f"{type(model).__name__} is not a gandistill generator, discriminator or classifier")


__all__ = ["GENERATORS", "DISCRIMINATORS", "CLASSIFIERS", "KINDS", "build_generator", "build_discriminator",
           "build_model", "kind_of", "BLOCK_CHANNELS", "block_channels", "INFERENCE_FORMS", "for_inference"]
