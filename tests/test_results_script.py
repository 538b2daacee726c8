"""scripts/results.py: the commands it records (quoted by the README table and the students' cards) are the
runs it makes."""
import argparse
import shlex

from gandistill.cli import build_parser, config_from_args
from gandistill.config import DistillConfig, TrainConfig

from .conftest import load_script

TEACHER_CFG = {"family": "dcgan", "base_channels": 64, "resolution": 32, "channels": 1}


def _args(**overrides):
    results = load_script("results")
    defaults = dict(teacher="pretrained/dcgan-fmnist", out="runs/results", widths=[0.5, 0.25, 0.125],
                    ablation_width=0.25, ablate=list(results.ABLATION_TERMS), steps=1500, batch_size=64, seed=0,
                    scratch_d_ratio=2.0, scratch_lr=5e-4, holdout=5000)
    return results, argparse.Namespace(**{**defaults, **overrides})


def test_every_recorded_command_parses_to_the_config_of_its_run():
    results, args = _args()
    runs = results.plan(args, TEACHER_CFG)
    assert [r["name"] for r in runs] == [
        "distill-w0.5", "distill-w0.25", "distill-w0.125", "scratch-w0.5", "scratch-w0.25", "scratch-w0.125",
        "ablate-no-pixel", "ablate-no-feature", "ablate-no-disc_feature", "ablate-no-disc_kl",
        "ablate-no-adversarial"]
    parser = build_parser()
    for r in runs:
        argv = shlex.split(r["command"])
        assert argv[:2] == ["gandistill", r["kind"]]
        cls = DistillConfig if r["kind"] == "distill" else TrainConfig
        from_cli = config_from_args(cls, parser.parse_args(argv[1:]))
        assert from_cli == cls(out=r["out"], **r["kwargs"]), r["name"]


def test_scratch_baseline_gets_a_wider_discriminator_and_ablations_zero_one_term():
    results, args = _args(widths=[0.5, 0.25])
    runs = {r["name"]: r for r in results.plan(args, TEACHER_CFG)}
    assert runs["scratch-w0.25"]["kwargs"]["d_width"] == 0.5
    assert runs["scratch-w0.5"]["kwargs"]["d_width"] == 1.0  # capped at the teacher's width
    assert runs["scratch-w0.25"]["kwargs"]["base_channels"] == 64
    for term in results.ABLATION_TERMS:
        kwargs = runs[f"ablate-no-{term}"]["kwargs"]
        assert kwargs[term] == 0.0 and kwargs["width"] == 0.25
        assert all(kwargs.get(other, None) != 0.0 for other in results.ABLATION_TERMS if other != term)
