"""gandistill: compress GAN generators by knowledge distillation.

Note: ``train``, ``profile``, ``export`` and ``sample`` name both a submodule and the function re-exported
here; ``gandistill.train`` is the function. Import the module with ``importlib.import_module`` or
``from gandistill.train import ...``.
"""
__version__ = "0.1.0"

from .budget import pick_widths  # noqa: E402
from .checkpoint import from_pretrained, import_state_dict, load_gan, save_gan, save_pretrained  # noqa: E402
from .demo import demo  # noqa: E402
from .export import export  # noqa: E402
from .importers import import_checkpoint  # noqa: E402
from .metrics import evaluate  # noqa: E402
from .models import build_discriminator, build_generator, for_inference  # noqa: E402
from .profile import profile  # noqa: E402
from .report import make_report, write_report  # noqa: E402
from .samples import sample  # noqa: E402
from .search import search  # noqa: E402
from .students import make_student  # noqa: E402
from .train import distill, train  # noqa: E402

__all__ = ["__version__", "build_generator", "build_discriminator", "make_student", "save_pretrained",
           "from_pretrained", "save_gan", "load_gan", "import_state_dict", "import_checkpoint", "train", "distill", "evaluate",
           "profile", "export", "sample", "make_report", "write_report", "demo", "for_inference",
           "pick_widths", "search"]
