"""Each config field states its type, range, choices and help once, on the field: the choice lists config.py
writes (torch-free) are the registries' names, and the CLI's flags take their help and choices from the fields."""
import argparse
import dataclasses

import pytest
import torch

from gandistill import config as C
from gandistill.cli import build_parser
from gandistill.engine import lr_at
from gandistill.export import FORMATS
from gandistill.losses import ADVERSARIAL, feature_loss, pixel_loss
from gandistill.models import GENERATORS
from gandistill.students import INITS

CLI_CONFIGS = {"train": C.TrainConfig, "distill": C.DistillConfig, "demo": C.DemoConfig,
               "train-classifier": C.ClassifierTrainConfig}


def test_config_choices_are_the_registries_names():
    assert list(C.GAN_FAMILIES) == GENERATORS.names()
    assert sorted(C.ADVERSARIAL_LOSSES) == ADVERSARIAL.names()
    assert sorted(C.INITS) == INITS.names()
    assert sorted(C.EXPORT_FORMATS) == FORMATS.names()


def test_every_choice_of_a_loss_kind_or_schedule_is_one_the_code_runs():
    a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    for kind in C.PIXEL_KINDS:
        assert pixel_loss(a, b, kind) > 0
    adapters = torch.nn.ModuleDict({"x": torch.nn.Identity()})
    for kind in C.FEATURE_KINDS:
        assert feature_loss({"x": a}, {"x": b}, adapters, kind) > 0
    for schedule in C.LR_SCHEDULES:
        assert lr_at(schedule, 0, 10) == 1.0


def _actions(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


@pytest.mark.parametrize("command", CLI_CONFIGS)
def test_flags_take_help_choices_and_defaults_from_the_fields(command):
    actions = _actions(command)
    for f in dataclasses.fields(CLI_CONFIGS[command]):
        action = actions[f.name]
        assert f.metadata["help"], f"{f.name} states no help"
        assert action.help == f.metadata["help"] + " (default: %(default)s)"
        assert action.default == f.default
        if f.metadata["choices"]:
            assert tuple(action.choices) == f.metadata["choices"]


def test_a_field_refuses_what_its_metadata_rules_out():
    with pytest.raises(ValueError, match=r"^init must be l1, prefix, random or svs, got 'best'$"):
        C.DistillConfig(init="best")
    with pytest.raises(ValueError, match=r"^kl_temperature must be > 0, got 0.0$"):
        C.DistillConfig(kl_temperature=0.0)
    with pytest.raises(ValueError, match=r"^class_alpha must be float, got 'x'$"):
        C.DistillConfig(class_alpha="x")
    with pytest.raises(ValueError, match=r"^metrics must be a non-empty subset of fid, kid, is, got None$"):
        C.EvalConfig(metrics=None)
    assert C.StyleGAN2Config(conv_clamp=None).conv_clamp is None  # None where the annotation allows it
    assert C.DistillConfig(macs=1_500_000).macs == 1_500_000  # a budget may be a number or a string


def test_the_config_reference_in_the_docs_is_the_fields():
    from pathlib import Path

    from gandistill.cli_args import config_reference

    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text() == config_reference(), "docs/config.md is stale: regenerate it (its first lines say how)"
