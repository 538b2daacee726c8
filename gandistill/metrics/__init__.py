"""FID / KID / IS through torch-fidelity, paired fidelity against a teacher, feature extractors, stats cache.

The only package that imports torch_fidelity. One job a module:

- ``evaluation``  the protocol: evaluate(), image_metrics(), metric names, results files
- ``extractors``  the extractor registry, torch-fidelity's import, Inception weights (found offline, converted)
- ``cache``       real-image features and FID statistics, cached under a digest of the protocol
- ``kid_math``    KID on torch-fidelity's subsets with fewer multiply-adds
- ``paired``      PSNR / SSIM / feature distance of a student against its teacher, same latents

Everything public is re-exported here: ``from gandistill.metrics import evaluate``.
"""
from ..checkpoint import sha256_file  # noqa: F401 - tests reach it through this package
from ..data import to_uint8  # noqa: F401
from ..models import for_inference  # noqa: F401
from ..samples import latents  # noqa: F401
from .cache import real_features, real_images, stats_key
from .evaluation import (
    FEATURE_BYTES_PER_SAMPLE,
    FID_BIAS_NOTE,
    PROGRESS_DELAY_S,
    REFERENCES,
    _scores,  # noqa: F401
    append_results,
    default_extractor,
    evaluate,
    image_metrics,
    metric_key,
    trained_on,
)
from .extractors import (
    CONVERTED_INCEPTION,
    DEFAULT_CLASSIFIER,
    EXTRACTORS,
    IS_UNAVAILABLE,
    REPO_ROOT,
    TORCH_FIDELITY_INCEPTION,
    TORCH_FIDELITY_INCEPTION_URL,
    Extractor,
    ExtractorWeights,
    ToUint8RGB,
    _fid_helper_file,  # noqa: F401
    _ImageDataset,  # noqa: F401
    _load_inception_state,  # noqa: F401
    cache_dir,
    convert_fid_helper_inception,
    extract_features,
    fidelity,
    inception_weights_help,
    make_extractor,
    resolve_extractor,
)
from .kid_math import KID_SUBSETS, _kernel_sums, kid, kid_subset_indices  # noqa: F401
from .paired import SSIM_WINDOW, _psnr_ssim, paired_fidelity  # noqa: F401

__all__ = [
    "CONVERTED_INCEPTION", "DEFAULT_CLASSIFIER", "EXTRACTORS", "FEATURE_BYTES_PER_SAMPLE", "FID_BIAS_NOTE",
    "IS_UNAVAILABLE", "KID_SUBSETS", "PROGRESS_DELAY_S", "REFERENCES", "REPO_ROOT", "SSIM_WINDOW",
    "TORCH_FIDELITY_INCEPTION", "TORCH_FIDELITY_INCEPTION_URL", "Extractor", "ExtractorWeights", "ToUint8RGB",
    "append_results", "cache_dir", "convert_fid_helper_inception", "default_extractor", "evaluate",
    "extract_features", "fidelity", "image_metrics", "inception_weights_help", "kid", "kid_subset_indices",
    "make_extractor", "metric_key", "paired_fidelity", "real_features", "real_images", "resolve_extractor",
    "stats_key", "trained_on",
]
