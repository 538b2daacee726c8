"""train_classifier(): the Fashion-MNIST CNN behind the ``fmnist-cnn`` feature extractor, one top-down function.

A fixed number of epochs, no checkpoint selection: the test split is read once, at the end, to report accuracy.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_pretrained
from .config import ClassifierConfig, ClassifierTrainConfig
from .data import ImageData, find_fashion_mnist, load_dataset
from .models import build_model
from .outputs import OutputRefused, check_fresh_dir, check_no_links, check_not_input


@dataclass
class ClassifierResult:
    """What train_classifier() returns."""

    out: Path
    model: nn.Module
    test_accuracy: float
    train_accuracy: float
    wall_time_s: float
    history: list[dict] = field(default_factory=list)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 2 pixels (background fill): x [B, C, R, R] in [-1, 1]."""
    b, _, r, _ = x.shape
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None].to(x.device), x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)  # [B, C, R+4, R+4]
    dy, dx = (torch.randint(0, 5, (b,), generator=g).to(x.device) for _ in range(2))
    ar = torch.arange(r, device=x.device)
    rows = (dy[:, None] + ar)[:, :, None]  # [B, R, 1]
    cols = (dx[:, None] + ar)[:, None, :]  # [B, 1, R]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def accuracy(model: nn.Module, data: ImageData, device: str | torch.device = "cpu", batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on labelled ``data``."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        logits = model(data.batch(idx, device))
        correct += int((logits.argmax(1).cpu() == data.labels[idx]).sum())
    model.train(was_training)
    return correct / len(data)


def _own_classifier(out: Path) -> bool:
    """Whether ``out`` is a classifier train_classifier saved: config.json and weights only, with its train_config."""
    try:
        if {p.name for p in out.iterdir()} != {CONFIG_NAME, WEIGHTS_NAME}:
            return False
        meta = json.loads((out / CONFIG_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(meta, dict) and meta.get("kind") == "classifier" and \
        isinstance(meta.get("extra"), dict) and isinstance(meta["extra"].get("train_config"), dict)


def _check_out(cfg: ClassifierTrainConfig, overwrite: bool) -> None:
    """Before any work: ``out`` is new, empty or a classifier this function saved (``overwrite``: any folder), is
    not inside the data it trains on, and holds no link (one would lead the weights out of it)."""
    out = Path(cfg.out)
    data_root = cfg.data_root
    if data_root is None and cfg.data == "fashion-mnist":  # the folder it would find the images in
        with contextlib.suppress(FileNotFoundError):
            data_root = find_fashion_mnist(None, "train")[0].parent
    check_not_input(out, {"--data-root": data_root})
    if out.is_symlink():
        raise OutputRefused(f"--out {out}: is a symbolic link; a command follows no link out of its output folder")
    check_no_links(out)
    if not _own_classifier(out):
        check_fresh_dir(out, overwrite=overwrite)


def train_classifier(config: ClassifierTrainConfig | dict | None = None, *, overwrite: bool = False,
                     **overrides) -> ClassifierResult:
    """Train the FashionCNN classifier; saves it with save_pretrained into ``config.out``.

    overwrite: write into an ``out`` that holds files this function did not make (never through a link)."""
    if config is None:
        cfg = ClassifierTrainConfig(**overrides)
    elif isinstance(config, dict):
        cfg = ClassifierTrainConfig.from_dict({**config, **overrides})
    else:
        cfg = config.replace(**overrides) if overrides else config

    # --- set up ---
    _check_out(cfg, overwrite)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()

    # --- data: train split for training, test split only for the final report ---
    train_data = load_dataset(cfg.data, "train", cfg.data_root, resolution=32, channels=1)
    test_data = load_dataset(cfg.data, "test", cfg.data_root, resolution=32, channels=1)
    num_classes = int(train_data.labels.max()) + 1
    if num_classes < 2:
        raise ValueError(f"{cfg.data}: needs labelled images of at least 2 classes")

    # --- model and optimizer ---
    model_config = ClassifierConfig(num_classes=num_classes, width=cfg.width, feature_dim=cfg.feature_dim)
    model = build_model("classifier", "fmnist-cnn", model_config).to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # BN and biases
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    steps_per_epoch = len(train_data) // cfg.batch_size  # drop the last partial batch (BN dislikes tiny ones)
    total = steps_per_epoch * cfg.epochs
    warmup = min(steps_per_epoch, total // 4)

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    # --- loop ---
    history, step = [], 0
    bar = tqdm(total=total, desc="train-classifier", dynamic_ncols=True, mininterval=2.0, file=sys.stderr)
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(train_data), generator=g)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = train_data.batch(idx, device)  # [B, 1, 32, 32]
            y = train_data.labels[idx].to(device)
            if cfg.augment:
                x = _augment(x, g)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += len(idx)
            bar.update(1)
        record = {"epoch": epoch + 1, "loss": round(loss_sum / seen, 5), "train_accuracy": round(correct / seen, 5),
                  "elapsed_s": round(time.perf_counter() - t0, 1)}
        history.append(record)
        bar.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f}, "
                  f"train accuracy (augmented) {record['train_accuracy']:.4f}")
    bar.close()

    # --- finish: report, save ---
    model.eval()
    test_acc = accuracy(model, test_data, device)
    train_acc = history[-1]["train_accuracy"] if history else float("nan")
    wall = time.perf_counter() - t0
    out = Path(cfg.out)
    save_pretrained(model, out, extra={
        "test_accuracy": round(test_acc, 5), "train_config": cfg.to_dict(), "wall_time_s": round(wall, 1),
        "threads": torch.get_num_threads(), "history": history})
    return ClassifierResult(out, model, test_acc, train_acc, wall, history)
