"""gandistill: compress GAN generators by knowledge distillation."""
__version__ = "0.1.0"

from .checkpoint import from_pretrained, load_gan, save_gan, save_pretrained  # noqa: E402
from .models import build_discriminator, build_generator  # noqa: E402
from .students import make_student  # noqa: E402
from .train import distill, train  # noqa: E402

__all__ = ["__version__", "build_generator", "build_discriminator", "make_student", "save_pretrained",
           "from_pretrained", "save_gan", "load_gan", "train", "distill"]
