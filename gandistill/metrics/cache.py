"""Real-image features and their FID statistics, cached under a digest of the protocol."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..checkpoint import atomic_write
from ..data import load_dataset
from .extractors import cache_dir, extract_features, fidelity

# --- real-image features, cached under the protocol's digest -------------------------------------------

def real_images(dataset: str, split: str, count: int, resolution: int, channels: int,
                data_root: str | os.PathLike | None = None) -> torch.Tensor:
    """The first ``count`` images of the split as uint8 [N, 3, R, R]."""
    data = load_dataset(dataset, split, data_root, resolution=resolution, channels=channels)
    img = data.images[:count]
    return img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img


def stats_key(dataset: str, split: str, count: int, resolution: int, extractor: str, weights_sha256: str,
              images_sha256: str, layer: str) -> str:
    """The cache key of real-image features: a digest of everything that changes them.

    ``features`` counts changes to how gandistill computes them (2: the fmnist-cnn extractor in channels_last).
    """
    fields = {"dataset": dataset, "split": split, "count": count, "resolution": resolution, "extractor": extractor,
              "weights_sha256": weights_sha256, "images_sha256": images_sha256, "layer": layer, "features": 2}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def real_features(images: torch.Tensor, protocol: dict, extractor_obj, layer: str, batch_size: int,
                  device: str, cache: bool = True) -> tuple[torch.Tensor, dict, Path | None]:
    """(features [N, D], FID statistics, cache file or None) of the real images, from the cache when present."""
    images_sha = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()
    key = stats_key(protocol["dataset"], protocol["split"], images.shape[0], images.shape[-1], protocol["extractor"],
                    protocol["weights_sha256"], images_sha, layer)
    path = cache_dir() / "stats" / f"real-{key}.safetensors"
    if cache and path.is_file():
        try:
            data = load_file(str(path))
            feats = data["features"]
            return feats, {"mu": data["mu"].numpy(), "sigma": data["sigma"].numpy()}, path
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    feats = extract_features(images, extractor_obj, batch_size, device)[layer]
    stats = fidelity().fid_statistics(feats)
    if cache:
        meta = {k: str(v) for k, v in protocol.items() if k in ("dataset", "split", "extractor", "weights_sha256")}
        meta.update(count=str(images.shape[0]), resolution=str(images.shape[-1]), images_sha256=images_sha, layer=layer)
        tensors = {"features": feats.contiguous(), "mu": torch.from_numpy(np.ascontiguousarray(stats["mu"])),
                   "sigma": torch.from_numpy(np.ascontiguousarray(stats["sigma"]))}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return feats, stats, path if cache else None


