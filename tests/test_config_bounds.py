"""Sizes are bounded where a config is built (#32 hostile 6): an absurd model, batch or config.json is one
ValueError line before anything is built or written, never an overflow, a RecursionError or a run folder."""
import json

import pytest

from gandistill import config as C
from gandistill.checkpoint import from_pretrained, save_pretrained

from .conftest import tiny_generator
from .test_inputs import cli, one_line

TRAIN = ["--steps", "1", "--data", "synthetic", "--sample-every", "0", "--log-every", "1"]


@pytest.mark.parametrize(("cls", "field"), [
    (C.DCGANConfig, "base_channels"), (C.DCGANConfig, "z_dim"),
    (C.StyleGAN2Config, "z_dim"), (C.StyleGAN2Config, "w_dim"), (C.StyleGAN2Config, "channel_max"),
    (C.StyleGAN2Config, "mbstd_channels"), (C.StyleGAN2LiteConfig, "base_channels"),
    (C.StyleGAN2LiteConfig, "w_dim"), (C.ClassifierConfig, "width"), (C.ClassifierConfig, "feature_dim"),
    (C.TrainConfig, "base_channels"), (C.TrainConfig, "batch_size"), (C.DistillConfig, "batch_size"),
    (C.DistillConfig, "disc_batch"), (C.DemoConfig, "batch_size"), (C.EvalConfig, "batch_size"),
    (C.ProfileConfig, "throughput_batch"), (C.ClassifierTrainConfig, "batch_size"),
])
def test_sizes_have_an_upper_bound(cls, field):
    batch = {"batch_size": C.MAX_SIZE} if field == "disc_batch" else {}  # disc_batch <= batch_size
    cls(**{field: C.MAX_SIZE}, **batch)
    for value in (C.MAX_SIZE + 1, 10**9, 99999999999):
        with pytest.raises(ValueError, match=rf"^{field} must be in \[\d, {C.MAX_SIZE}\], got {value}$"):
            cls(**{field: value}, **batch)


def test_mapping_layers_are_bounded():
    for cls in (C.StyleGAN2Config, C.StyleGAN2LiteConfig):
        cls(mapping_layers=C.MAX_LAYERS)
        with pytest.raises(ValueError, match=r"^mapping_layers must be in \[1, 64\]"):
            cls(mapping_layers=C.MAX_LAYERS + 1)


def test_a_stylegan2_run_names_base_channels_when_its_channel_base_is_too_large():
    with pytest.raises(ValueError, match=r"^base_channels times resolution .* must be <= 1048576"):
        C.TrainConfig(family="stylegan2", resolution=1024, base_channels=2048)


@pytest.mark.parametrize("flags", [["--base-channels", "100000"], ["--batch-size", "99999999999"],
                                   ["--base-channels", "1000000000"]])
def test_train_refuses_absurd_sizes_before_a_run_folder_exists(tmp_path, capsys, flags):
    code, err = cli(["train", *TRAIN, *flags, "--out", tmp_path / "run"], capsys)
    assert code == 2 and flags[0].removeprefix("--").replace("-", "_") in one_line(err)
    assert not (tmp_path / "run").exists()


def test_distill_refuses_an_absurd_batch_before_a_run_folder_exists(tmp_path, capsys):
    code, err = cli(["distill", "--teacher", tmp_path / "t", "--batch-size", "99999999999", "--out",
                     tmp_path / "run"], capsys)
    assert code == 2 and "batch_size must be in" in one_line(err)
    assert not (tmp_path / "run").exists()


def test_a_config_json_with_a_huge_size_is_refused_before_any_model_is_built(tmp_path, capsys):
    model_dir = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")
    meta = json.loads((model_dir / "config.json").read_text())
    meta["config"]["base_channels"] = 1000000000
    (model_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"config.json: bad config: base_channels must be in \[1, 65536\]"):
        from_pretrained(model_dir)
    code, err = cli(["info", model_dir], capsys)
    assert code == 1 and "base_channels must be in" in one_line(err)


@pytest.mark.parametrize(("text", "words"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a": ' * 200 + "1" + "}" * 200, "nested too deeply"),
    ('{"base_channels": ' + "9" * 5000 + "}", "an integer of more than 4300 digits"),
    ("{'a': 1}", "not valid JSON"),
    (b'{"a": "\xff"}', "not valid JSON"),
])
def test_load_json_text_turns_every_failure_into_one_value_error_line(text, words):
    with pytest.raises(ValueError) as err:
        C.load_json_text(text, "M/config.json")
    message = str(err.value)
    assert message.startswith("M/config.json: ") and words in message and "\n" not in message
    assert len(message) < 300


def test_load_json_text_reads_what_json_reads():
    data = {"config": {"base_channels": 4, "lineage": {"teacher": {"lineage": {"teacher": {}}}}}, "x": [1.5]}
    assert C.load_json_text(json.dumps(data), "x") == data
    assert C.load_json_text(json.dumps(data).encode(), "x") == data


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"gandistill_format": ' + "9" * 5000 + "}"])
def test_a_hostile_config_json_is_one_line_through_the_cli(tmp_path, capsys, text):
    model_dir = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")
    (model_dir / "config.json").write_text(text)
    code, err = cli(["info", model_dir], capsys)
    assert code == 1 and "config.json: " in one_line(err) and "unexpected" not in err


def test_disc_batch_larger_than_the_batch_is_refused():
    for cls in (C.DistillConfig, C.DemoConfig):
        cls(batch_size=8, disc_batch=8)
        with pytest.raises(ValueError, match=r"^disc_batch must be <= batch_size \(8; 0 = the whole batch\), got 9$"):
            cls(batch_size=8, disc_batch=9)
