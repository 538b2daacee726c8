"""The CLI end to end for info, train and distill (other commands are tested beside their modules)."""
import json
import shlex
import subprocess
import sys

import pytest

from gandistill.checkpoint import from_pretrained, sha256_file
from gandistill.cli import build_parser, config_from_args, main
from gandistill.cli_args import distill_command_for
from gandistill.config import DISTILL_ADDED, DISTILL_BOOKKEEPING, DistillConfig

FAST = ["--data", "synthetic", "--batch-size", "8", "--log-every", "2", "--sample-every", "0"]


@pytest.mark.parametrize("family,channels", [("dcgan", "8"), ("stylegan2", "4")])
def test_train_distill_info_end_to_end(tmp_path, capsys, family, channels):
    teacher = tmp_path / "teacher"
    assert main(["train", "--family", family, "--base-channels", channels, "--steps", "3", "--out", str(teacher),
                 *FAST]) == 0
    assert f"done: 3 steps; generator in {teacher}/generator" in capsys.readouterr().out
    assert main(["distill", "--teacher", str(teacher), "--width", "0.5", "--steps", "3",
                 "--out", str(tmp_path / "d"), *FAST]) == 0
    assert main(["info", str(tmp_path / "d" / "student")]) == 0
    out = capsys.readouterr().out
    assert f"family:    {family} (generator)" in out
    assert "lineage:   student of a" in out and "width x0.5, init=prefix" in out
    assert "teacher weights sha256: " + sha256_file(teacher / "generator" / "model.safetensors") in out
    assert "kept " in out and "MACs:" in out
    assert main(["info", str(teacher)]) == 0
    assert "lineage:   none" in capsys.readouterr().out
    student = from_pretrained(tmp_path / "d" / "student")
    assert student.config.width == 0.5


@pytest.mark.parametrize("argv,message", [
    (["distill", "--width", "0"], "width must be in (0, 1]"),
    (["distill", "--width", "1.5"], "width must be in (0, 1]"),
    (["distill", "--steps", "-3"], "steps must be >= 0"),
    (["distill", "--kl-temperature", "0"], "kl_temperature must be > 0"),
    (["train", "--batch-size", "0"], "batch_size must be > 0"),
    (["train", "--resolution", "48"], "resolution must be 32 or 64"),
    (["distill", "--width", "nan"], "width must be in (0, 1]"),
    (["distill", "--g-lr", "inf"], "g_lr must be > 0"),
    (["distill", "--seed", "5000000"], "seed must be in [0, 4294966]"),
    (["distill", "--device", "cuda:x"], "device must be cpu, cuda or cuda:N"),
    (["distill", "--out", ""], "out must be a non-empty path"),
    (["train", "--beta2", "1"], "beta2 must be in [0, 1)"),
    (["eval", "x", "--seeds", "1,1"], "seeds must be distinct"),
])
def test_bad_values_are_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["distill", "--width", "wide"], ["distill", "--init", "best"],
                                  ["train", "--family", "biggan"], ["nonsense"], ["distill", "--data", "cifar"],
                                  ["train", "--steps", "1.5"], ["distill", "--ema=yes"], ["distill", "--bogus"]])
def test_unparseable_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err  # one line, not argparse's usage block followed by the error
    assert err.count("\n") == 1 and ": error: " in err and "--help)" in err


def test_missing_teacher_is_a_failure_with_one_line(tmp_path, capsys):
    assert main(["distill", "--teacher", str(tmp_path / "none"), "--out", str(tmp_path / "d"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "no such directory" in err and err.count("\n") == 1
    assert not (tmp_path / "d" / "student").exists()


def test_info_on_a_non_model(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main(["info", str(tmp_path / "x")]) == 1
    assert "config.json: missing" in capsys.readouterr().err


def test_console_script_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "gandistill", "--help"], capture_output=True, text=True, check=True)
    for command in ("info", "train", "distill"):
        assert command in out.stdout
    out = subprocess.run([sys.executable, "-m", "gandistill", "distill", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--disc-kl" in out and "(default: 0.25)" in out


def _parsed(command: str) -> dict:
    return vars(config_from_args(DistillConfig, build_parser().parse_args(shlex.split(command)[1:])))


def test_distill_command_for_states_what_todays_defaults_would_read_otherwise():
    run = "gandistill distill --width 0.5 --steps 100 --out runs/x"
    record = {k: v for k, v in _parsed(run).items() if k not in DISTILL_ADDED}  # a record from before those existed
    record.update(init="prefix", ema=False, g_lr=3e-4, out="elsewhere", checkpoint_every=7)
    completed = distill_command_for(run, record)
    assert completed.startswith(run + " ")
    today = _parsed(completed)
    made_with = DistillConfig.made_with(record)
    assert {k: v for k, v in today.items() if k not in DISTILL_BOOKKEEPING} == \
        {k: v for k, v in made_with.items() if k not in DISTILL_BOOKKEEPING}
    assert today["lr_schedule"] == "constant" and today["disc_batch"] == 0  # what a record without them meant
    assert today["out"] == "runs/x" and today["checkpoint_every"] == 500  # bookkeeping stays the line's own
    assert distill_command_for(completed, record) == completed  # nothing left to add


def test_distill_command_for_reads_a_per_block_record_as_json_wrote_it():
    """A student's extra.distill went through JSON: its widths are a list, the parsed line's a tuple."""
    run = "gandistill distill --widths 106,26,26 --steps 100 --out runs/x"
    record = json.loads(json.dumps(_parsed(run)))
    assert record["widths"] == [106, 26, 26]
    assert distill_command_for(run, record) == run


def test_distill_command_for_refuses_a_line_that_did_not_make_the_run():
    record = _parsed("gandistill distill --init l1")
    with pytest.raises(ValueError, match="init='prefix'"):
        distill_command_for("gandistill distill --init prefix", record)
    with pytest.raises(ValueError, match="not a gandistill distill command"):
        distill_command_for("gandistill train --steps 3", record)
    with pytest.raises(ValueError, match="cannot parse"):
        distill_command_for("gandistill distill --bogus", record)


@pytest.mark.parametrize("command", ["distill", "demo"])
def test_a_disc_batch_above_the_batch_size_is_refused(tmp_path, capsys, command):
    from gandistill.checkpoint import save_gan

    from .conftest import tiny_discriminator, tiny_generator
    from .test_inputs import cli, one_line

    teacher = save_gan(tiny_generator("dcgan", base_channels=4), tiny_discriminator("dcgan", base_channels=4),
                       tmp_path / "gan")
    code, err = cli([command, "--teacher", teacher, "--out", tmp_path / "run", "--batch-size", "4",
                     "--disc-batch", "9", "--data", "synthetic", "--steps", "1"], capsys)
    assert code == 2 and "disc_batch must be <= batch_size (4" in one_line(err)
    assert not (tmp_path / "run").exists()
