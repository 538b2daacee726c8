"""Shipping a model into pretrained/: pick a teacher's checkpoint on held-out train images, and write a model card
from what can be measured (``gandistill select-teacher``, ``gandistill card``; scripts/ship.sh runs both).

No number in a card is typed by hand: params and MACs of each model, the sha256 of every weights file, the
metrics of a ``gandistill eval`` JSON with their protocol, the selection scores of ``select_teacher``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .checkpoint import CONFIG_NAME, from_pretrained, load_state, save_gan, weights_sha256, write_json
from .config import TrainConfig
from .data import load_dataset, to_uint8
from .metrics import image_metrics
from .models import build_discriminator
from .profile import count_macs, count_params
from .samples import latents

LICENCE = """## Licence

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms") is distributed under the MIT licence; these weights were trained on it and are released
under gandistill's MIT licence.
"""
FASHION_MNIST = "the Fashion-MNIST train split (Debian package dataset-fashion-mnist, /usr/share/datasets/fashion-mnist)"


@torch.no_grad()
def _generate(generator, num: int, seed: int, device: str = "cpu") -> torch.Tensor:
    generator = generator.to(device).eval()
    z = latents(num, generator.z_dim, seed).to(device)
    return torch.cat([to_uint8(generator(z[i:i + 500])).cpu() for i in range(0, num, 500)])


def select_teacher(run: str | os.PathLike, out: str | os.PathLike, num: int = 5000, seed: int = 0,
                   min_step: int = 0, last: int = 0, device: str = "cpu", verbose: bool = True) -> dict:
    """Score every snapshot of a ``gandistill train --holdout`` run (``snapshots/step*/``, EMA generators) by FID
    on the held-out train images (never the test split), and write the best as a GAN directory ``out``: its
    generator and the discriminator of the run's latest state (the step is recorded). Returns ``selection.json``.

    ``min_step``: score only snapshots from this step on; ``last``: only the N latest (0 = all)."""
    run = Path(run)
    state = load_state(run / "state.pt")
    cfg = TrainConfig.from_dict(state["config"])
    if cfg.holdout <= 0:
        raise ValueError(f"{run}: trained without --holdout; nothing to select on but the test split, which we refuse")
    snapshots = [p for p in sorted((run / "snapshots").glob("step*")) if int(p.name[4:]) >= min_step]
    snapshots = snapshots[-last:] if last > 0 else snapshots
    if not snapshots:
        raise ValueError(f"{run}/snapshots: no snapshots from step {min_step} on (train with --snapshot-every)")
    train = load_dataset(cfg.data, "train", cfg.data_root, cfg.resolution, cfg.channels)
    holdout = train.images[len(train) - cfg.holdout:]  # exactly the images training never saw
    scores, key = {}, None
    for snap in snapshots:
        values = image_metrics(_generate(from_pretrained(snap), num, seed, device), holdout, metrics=("fid",),
                               seed=seed, device=device)
        key = next(iter(values))
        scores[snap.name] = values[key]
        if verbose:
            print(f"{snap.name}: {key.replace('[', '-holdout[')} {values[key]:.2f}", flush=True)
    best = min(scores, key=scores.get)
    discriminator = build_discriminator(cfg.family, cfg.model_config(discriminator=True))
    discriminator.load_state_dict(state["D"])
    out = Path(out)
    save_gan(from_pretrained(run / "snapshots" / best), discriminator, out)
    selection = {"run": str(run), "selected": best, "metric": f"{key} on the last {cfg.holdout} train images (held out)",
                 "scores": scores, "scored_from_step": min_step, "discriminator_from_state_step": int(state["step"]),
                 "train_config": cfg.to_dict()}
    write_json(out / "selection.json", selection)
    return selection


def _model_rows(root: Path) -> list[str]:
    rows = ["| part | kind | config | params | MACs per image | sha256 of model.safetensors |",
            "|---|---|---|---|---|---|"]
    for cfg_path in sorted(root.rglob(CONFIG_NAME)):
        d = cfg_path.parent
        meta = json.loads(cfg_path.read_text())
        model = from_pretrained(d, kind=meta["kind"])
        macs = f"{count_macs(model):,}" if meta["kind"] == "generator" else "-"
        rows.append(f"| `{d.relative_to(root) if d != root else '.'}` | {meta['family']} {meta['kind']} | "
                    f"`{json.dumps(meta['config'], separators=(',', ':'))}` | {count_params(model):,} | {macs} | "
                    f"`{weights_sha256(d)}` |")
    return rows


def _metric_lines(eval_path: Path) -> list[str]:
    records = json.loads(Path(eval_path).read_text())
    records = records if isinstance(records, list) else [records]
    lines = []
    for rec in records:
        p = rec["protocol"]
        lines.append(f"- `{rec['model']}`: " + ", ".join(f"{k} **{v:.4g}**" for k, v in rec["metrics"].items()))
        if rec.get("paired"):
            pf = rec["paired"]
            lines.append(f"  - vs teacher `{pf['teacher']}` on {pf['num']} shared latents: PSNR {pf['psnr']:.2f} dB, "
                         f"SSIM {pf['ssim']:.4f}")
        lines.append(f"  - protocol: {p['dataset']}/{p['split']}, {p['num_samples']} generated vs {p['num_real']} "
                     f"real images, extractor `{p['extractor']}` (weights sha256 `{p['weights_sha256'][:12]}...`), "
                     f"seeds {p['seeds']}, torch-fidelity {p['torch_fidelity']}")
    return lines


def write_card(root: str | os.PathLike, title: str, command: str, wall_time: str, about: str = "",
               data: str = FASHION_MNIST, steps: str = "", evals: list = (), extra: str | os.PathLike | None = None
               ) -> Path:
    """``root``/README.md: files (params, MACs, sha256), the command that made it, data, steps, wall time, the
    checkpoint selection (``selection.json``), the metrics of ``gandistill eval`` JSONs, ``extra`` markdown."""
    root = Path(root)
    parts = [f"# {title}", "", about, "", "## Files", "", *_model_rows(root), ""]
    parts += ["## How it was made", "", "```", command, "```", "", f"- Data: {data}."]
    if steps:
        parts.append(f"- Training: {steps}.")
    parts.append(f"- Wall time: {wall_time}.")
    selection = root / "selection.json"
    if selection.is_file():
        sel = json.loads(selection.read_text())
        scores = ", ".join(f"{k.removeprefix('step').lstrip('0')}: {v:.2f}" for k, v in sel["scores"].items())
        parts.append(f"- Checkpoint selection: `{sel['selected']}` by {sel['metric']} (step: score) {scores}; "
                     f"the discriminator is the run's at step {sel['discriminator_from_state_step']}.")
    parts.append("")
    if evals:
        parts += ["## Metrics", ""]
        for path in evals:
            parts += _metric_lines(path)
        parts.append("")
    if extra:
        parts += [Path(extra).read_text().rstrip(), ""]
    parts.append(LICENCE)
    (root / "README.md").write_text("\n".join(parts))
    return root / "README.md"
