#!/usr/bin/env python
"""Write the README.md card of a shipped model directory from what can be measured, so that no number in
it is typed by hand: params and MACs of each model, the sha256 of every weights file, the metrics of an
``gandistill eval`` JSON with their protocol, the selection scores of ``select_teacher.py``.

  python scripts/card.py pretrained/dcgan-fmnist --title "dcgan-fmnist: the DCGAN teacher" \\
      --command "scripts/train_teacher_dcgan.sh" --eval runs/ship/eval-teacher.json \\
      --wall-time "about 5 h on 1 thread of a 2-core AMD EPYC VM" --about "..."
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gandistill.checkpoint import CONFIG_NAME, from_pretrained, weights_sha256
from gandistill.profile import count_macs, count_params

LICENCE = """## Licence

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms") is distributed under the MIT licence; these weights were trained on it and are released
under gandistill's MIT licence.
"""


def model_rows(root: Path) -> list[str]:
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


def metric_lines(eval_path: Path) -> list[str]:
    records = json.loads(eval_path.read_text())
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="the shipped directory (a GAN directory or a model directory)")
    ap.add_argument("--title", required=True)
    ap.add_argument("--about", default="", help="a paragraph on what the model is and how to use it")
    ap.add_argument("--command", required=True, help="the exact command that produced it")
    ap.add_argument("--data", default="the Fashion-MNIST train split (Debian package dataset-fashion-mnist, "
                                      "/usr/share/datasets/fashion-mnist)")
    ap.add_argument("--steps", default="", help="steps / batch size, in words")
    ap.add_argument("--wall-time", required=True, help="wall time and machine, in words")
    ap.add_argument("--eval", type=Path, action="append", default=[], help="gandistill eval JSON (repeatable)")
    ap.add_argument("--extra", type=Path, help="a markdown file appended before the licence")
    args = ap.parse_args(argv)

    root = args.root
    parts = [f"# {args.title}", "", args.about, "", "## Files", "", *model_rows(root), ""]
    parts += ["## How it was made", "", "```", args.command, "```", "", f"- Data: {args.data}."]
    if args.steps:
        parts.append(f"- Training: {args.steps}.")
    parts.append(f"- Wall time: {args.wall_time}.")
    selection = root / "selection.json"
    if selection.is_file():
        sel = json.loads(selection.read_text())
        scores = ", ".join(f"{k.removeprefix('step').lstrip('0')}: {v:.2f}" for k, v in sel["scores"].items())
        parts.append(f"- Checkpoint selection: `{sel['selected']}` by {sel['metric']} (step: score) {scores}; "
                     f"the discriminator is the run's at step {sel['discriminator_from_state_step']}.")
    parts.append("")
    if args.eval:
        parts += ["## Metrics", ""]
        for path in args.eval:
            parts += metric_lines(path)
        parts.append("")
    if args.extra:
        parts += [args.extra.read_text().rstrip(), ""]
    parts.append(LICENCE)
    (root / "README.md").write_text("\n".join(parts))
    print(f"written {root / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
