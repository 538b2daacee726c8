"""scripts/select_teacher.py on a tiny run: it scores the snapshots on the held-out train slice, keeps the
best, and refuses a run that held nothing out."""
import json
from pathlib import Path

import pytest

from gandistill.checkpoint import from_pretrained
from gandistill.train import train

from .conftest import load_script


@pytest.fixture(scope="module")
def select():
    return load_script("select_teacher").main


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
