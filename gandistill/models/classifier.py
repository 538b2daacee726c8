"""A small CNN classifier: the fast FID/KID/IS feature extractor on Fashion-MNIST and the perceptual net."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ClassifierConfig


class _Stage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(out_channels)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.conv0(x)))
        return F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)


class FashionCNN(nn.Module):
    """img [N, C, R, R] in [-1, 1] -> logits [N, num_classes]; taps ``s1``..``s3`` and ``feat`` [N, feature_dim]."""

    family = "fmnist-cnn"

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.stages = nn.ModuleList([_Stage(config.channels, w), _Stage(w, 2 * w), _Stage(2 * w, 4 * w)])
        self.fc = nn.Linear(4 * w * 16, config.feature_dim)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(config.feature_dim, config.num_classes)
        self.taps = ("s1", "s2", "s3", "feat")
        self.lineage: dict | None = None

    def forward_features(self, img: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if img.shape[-1] != 32:  # 64x64 inputs are judged at the classifier's native 32x32
            img = F.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        feats = {}
        x = img
        for i, stage in enumerate(self.stages, 1):
            x = stage(x)
            feats[f"s{i}"] = x
        feat = F.relu(self.fc(x.flatten(1)))  # [N, feature_dim]
        feats["feat"] = feat
        return self.head(self.dropout(feat)), feats

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.forward_features(img)[0]
