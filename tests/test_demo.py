"""The main job end to end on a tiny preset: distill, evaluate, profile, export, report."""
import json
from pathlib import Path

import pytest

from gandistill.checkpoint import save_gan
from gandistill.cli import main

from .conftest import tiny_discriminator, tiny_generator

SHIPPED_CLASSIFIER = Path(__file__).resolve().parents[1] / "pretrained" / "fmnist-cnn"


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_CLASSIFIER.is_dir(), reason="pretrained/fmnist-cnn is not shipped")
def test_demo_tiny_preset(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the extractor's weights live in pretrained/
    teacher = tmp_path / "teacher"
    save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), teacher)
    out = tmp_path / "demo"
    argv = ["demo", "--teacher", str(teacher), "--out", str(out), "--steps", "4", "--batch-size", "8",
            "--data", "synthetic", "--dataset", "synthetic", "--num-samples", "200", "--paired", "20",
            "--export-format", "onnx", "--no-verbose"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| `teacher`" in printed and "| `student-w0.25`" in printed and "report:" in printed
    for name in ("report.md", "report.json", "fid_vs_macs.png", "student.onnx", "export.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    models = [row["model"] for row in report["rows"]]
    assert models == ["teacher", "student-w0.25"]
    assert (out / "distill" / "student" / "model.safetensors").is_file()
    assert list(out.glob("compare_*.png")), "no teacher|student grid"
    # a second run resumes the finished distillation instead of refusing to start
    assert main(argv) == 0


def test_demo_without_teacher_is_one_clear_error(tmp_path, capsys):
    assert main(["demo", "--teacher", str(tmp_path / "missing"), "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and err.count("\n") == 1


def test_demo_without_the_shipped_teacher_says_where_it_is(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pretrained/dcgan-fmnist here
    assert main(["demo", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "pretrained/dcgan-fmnist not found" in err and "--teacher DIR" in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()
