"""Shipping: gandistill select-teacher on a tiny run scores the snapshots on the held-out train slice, keeps the
best, and refuses a run that held nothing out; gandistill card writes what it measured."""
import json
from pathlib import Path

import pytest

from gandistill.checkpoint import from_pretrained
from gandistill.cli import main
from gandistill.train import train


@pytest.fixture(scope="module")
def select():
    return lambda argv: main(["select-teacher", *argv])


def _run(path: Path, holdout: int) -> Path:
    train(out=str(path), family="dcgan", base_channels=8, steps=6, data="synthetic", batch_size=8, log_every=3,
          sample_every=0, checkpoint_every=3, snapshot_every=2, holdout=holdout)
    return path


def test_selects_the_best_held_out_snapshot(select, tmp_path):
    run = _run(tmp_path / "run", holdout=100)
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step0000002", "step0000004", "step0000006"]
    out = tmp_path / "teacher"
    assert select(["--run", str(run), "--out", str(out), "--num", "64"]) == 0
    sel = json.loads((out / "selection.json").read_text())
    assert set(sel["scores"]) == {"step0000002", "step0000004", "step0000006"}
    assert sel["selected"] == min(sel["scores"], key=sel["scores"].get)
    assert "last 100 train images" in sel["metric"] and sel["discriminator_from_state_step"] == 6
    chosen = from_pretrained(run / "snapshots" / sel["selected"]).state_dict()
    shipped = from_pretrained(out, "generator").state_dict()
    assert all((chosen[k] == shipped[k]).all() for k in chosen)
    assert (out / "discriminator" / "model.safetensors").exists()

    later = tmp_path / "later"
    assert select(["--run", str(run), "--out", str(later), "--num", "64", "--min-step", "4"]) == 0
    sel = json.loads((later / "selection.json").read_text())
    assert set(sel["scores"]) == {"step0000004", "step0000006"} and sel["scored_from_step"] == 4
    assert select(["--run", str(run), "--out", str(tmp_path / "none"), "--min-step", "7"]) == 1
    assert not (tmp_path / "none").exists()


def test_refuses_a_run_without_a_holdout(select, tmp_path, capsys):
    run = _run(tmp_path / "run", holdout=0)
    assert select(["--run", str(run), "--out", str(tmp_path / "teacher")]) == 1
    assert "holdout" in capsys.readouterr().err
    assert not (tmp_path / "teacher").exists()


def test_card_states_what_it_measured_and_the_command(tmp_path, capsys):
    from gandistill.checkpoint import save_gan, weights_sha256
    from gandistill.profile import count_macs

    from .conftest import tiny_discriminator, tiny_generator

    generator = tiny_generator("dcgan")
    root = save_gan(generator, tiny_discriminator("dcgan"), tmp_path / "gan")
    assert main(["card", str(root), "--title", "tiny: a test", "--command", "gandistill train --steps 1",
                 "--wall-time", "1 s", "--steps", "1 step"]) == 0
    card = (root / "README.md").read_text()
    assert card.startswith("# tiny: a test\n") and "```\ngandistill train --steps 1\n```" in card
    assert f"{count_macs(generator):,}" in card and weights_sha256(root) in card
    assert "- Training: 1 step." in card and "- Wall time: 1 s." in card and "## Licence" in card
    with pytest.raises(SystemExit) as exit_info:  # --command and --wall-time are required
        main(["card", str(root), "--title", "t"])
    assert exit_info.value.code == 2 and "--command, --wall-time" in capsys.readouterr().err
