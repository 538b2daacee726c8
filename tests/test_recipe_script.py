"""scripts/results.py --variants (docs/recipe.md's grid): each named variant is the run that made its row, whatever
today's defaults are (its full settings are pinned, not flags on top of the defaults)."""
import argparse
import dataclasses
import shlex

import pytest

from gandistill.cli import build_parser, config_from_args
from gandistill.cli_args import add_config_flags
from gandistill.config import DISTILL_ADDED, DISTILL_BOOKKEEPING, DistillConfig

from .conftest import load_script

# DistillConfig's defaults of 2026-12-04 (commits 8a42829 to d7c0b92), the settings of every row the recipe grid made
# (docs/recipe.md: "the old defaults: lr 2e-4 constant, Adam betas 0.5 / 0.999", --init l1), recorded here by hand
OLD_DEFAULTS = dict(init="l1", data="fashion-mnist", data_root=None, split="train", g_lr=2e-4, d_lr=2e-4, beta1=0.5,
                    beta2=0.999, pixel=1.0, pixel_kind="l1", feature=1.0, disc_feature=1.0, perceptual=0.0,
                    disc_kl=1.0, kl_temperature=1.0, class_kl=0.0, class_alpha=0.5, class_temperature=4.0,
                    adversarial=0.1, adv_loss="hinge", disc_batch=0, feature_kind="mse", lr_schedule="constant",
                    classifier=None, ema=True, ema_decay=0.999, device="cpu", amp=False, channels_last=False,
                    max_bad_steps=5)
LR1E3_COS = dict(g_lr=1e-3, d_lr=1e-3, lr_schedule="cosine")
RECORDED = {
    "base": {}, "no-feature": dict(feature=0.0), "feature-relative": dict(feature_kind="relative"),
    "adv0.3": dict(adversarial=0.3), "adv1": dict(adversarial=1.0), "cos": dict(lr_schedule="cosine"),
    "lr1e-3-cos": LR1E3_COS, "lr5e-4-cos": dict(g_lr=5e-4, d_lr=5e-4, lr_schedule="cosine"),
    "lr2e-3-cos": dict(g_lr=2e-3, d_lr=2e-3, lr_schedule="cosine"),
    "lr1e-3-cos-adv0.3": dict(LR1E3_COS, adversarial=0.3), "lr1e-3-cos-svs": dict(LR1E3_COS, init="svs"),
    "lr1e-3-cos-relative": dict(LR1E3_COS, feature_kind="relative"),
    "lr1e-3-cos-no-feature": dict(LR1E3_COS, feature=0.0), "ema0.99": dict(ema_decay=0.99),
    "init-prefix": dict(init="prefix"), "init-random": dict(init="random"), "init-svs": dict(init="svs"),
}
GIVEN = {"teacher", "width", "steps", "batch_size", "seed"}  # the script's own arguments
# the size settings added since: a row's size is its width; DISTILL_ADDED says what they were before they existed
SIZE = {"widths", "macs", "balance"}


def _command(name: str, seed: int) -> list[str]:
    results = load_script("results")
    args = results.parser().parse_args(["--variants", name, "--widths", "0.25", "--steps", "1500",
                                        "--seeds", str(seed), "--out", "runs/recipe"])
    (run,) = results.plan(args, {})
    assert run["name"] == f"w0.25-s1500-{name}-seed{seed}"  # the folder names runs/recipe already holds
    return shlex.split(run["command"])


def test_every_variant_is_recorded():
    assert set(load_script("results").VARIANTS) == set(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_variant_gives_the_config_its_row_was_made_with(name):
    argv = _command(name, 2)
    assert argv[:2] == ["gandistill", "distill"]
    config = config_from_args(DistillConfig, build_parser().parse_args(argv[1:]))
    made = {k: v for k, v in dataclasses.asdict(config).items() if k not in DISTILL_BOOKKEEPING | GIVEN}
    assert made == {**OLD_DEFAULTS, **RECORDED[name], **{k: DISTILL_ADDED[k] for k in SIZE}}
    assert (config.teacher, config.width, config.steps, config.batch_size, config.seed) == \
        ("pretrained/dcgan-fmnist", 0.25, 1500, 64, 2)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_no_setting_of_a_variant_comes_from_todays_defaults(name):
    """Parsed with every default replaced by a marker, the command still sets every setting that shapes the
    weights: no default can reach it (None-valued paths and the size settings aside: no flag gives None)."""
    parser = argparse.ArgumentParser()
    add_config_flags(parser, DistillConfig)
    marker = object()
    parser.set_defaults(**{f.name: marker for f in dataclasses.fields(DistillConfig)})
    args = vars(parser.parse_args(_command(name, 0)[2:]))
    from_defaults = {k for k, v in args.items() if v is marker} - DISTILL_BOOKKEEPING
    assert from_defaults == {"data_root", "classifier"} | SIZE, from_defaults


def test_commands_md_keeps_the_rows_of_other_calls(tmp_path):
    """Two calls with other --variants into one --out: commands.md (what a card quotes) keeps both."""
    results = load_script("results")
    for variants in ("base", "adv0.3"):
        args = results.parser().parse_args(["--variants", variants, "--widths", "0.25", "--out", str(tmp_path)])
        results.write_commands(tmp_path / "commands.md", results.plan(args, {}))
    lines = (tmp_path / "commands.md").read_text().splitlines()
    assert [line.split("`")[1] for line in lines] == ["w0.25-s1500-base-seed0", "w0.25-s1500-adv0.3-seed0"]
    assert all("--adversarial 0.3" in line for line in lines if "adv0.3" in line.split("`")[1])
