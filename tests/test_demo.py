"""The main job end to end on a tiny preset: distill, evaluate, profile, export, report."""
import hashlib
import importlib
import json
from pathlib import Path
from shutil import rmtree

import pytest
import torch
from safetensors.torch import load_file

from gandistill.checkpoint import load_state, save_gan, save_state
from gandistill.cli import main

from .conftest import tiny_discriminator, tiny_generator

demo_mod = importlib.import_module("gandistill.demo")  # the module; gandistill.demo is the function
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
    distilled = json.loads((out / "distill" / "student" / "config.json").read_text())
    assert distilled["extra"]["distill"]["disc_batch"] == 8  # the demo's preset reaches distill()
    assert list(out.glob("compare_*.png")), "no teacher|student grid"
    # a second run resumes the finished distillation instead of refusing to start (or starting over)
    removed = []
    monkeypatch.setattr(demo_mod.shutil, "rmtree", lambda path: removed.append(Path(path)) or rmtree(path))
    first = load_file(out / "distill" / "student" / "model.safetensors")
    assert main(argv) == 0
    again = load_file(out / "distill" / "student" / "model.safetensors")
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert removed == []
    # a retrained teacher (same path, other weights): the distillation starts over from it
    save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), teacher)
    assert main(argv) == 0
    assert removed == [out / "distill"]
    lineage = json.loads((out / "distill" / "student" / "config.json").read_text())["lineage"]
    weights = (teacher / "generator" / "model.safetensors").read_bytes()
    assert lineage["teacher"]["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    # a demo folder left by an earlier version (init l1, the default then; made before --disc-batch, so all
    # images): resuming it would refuse or mix recipes, so it starts over with today's preset
    state = load_state(out / "distill" / "state.pt")
    state["config"]["init"] = "l1"
    del state["config"]["disc_batch"]
    save_state(state, out / "distill" / "state.pt")
    assert main([*argv[:-1], "--verbose"]) == 0
    assert removed == [out / "distill"] * 2
    assert "other settings (init 'l1' -> 'prefix'; disc_batch 0 -> 8); starting it over" in capsys.readouterr().err
    distilled = json.loads((out / "distill" / "student" / "config.json").read_text())["extra"]["distill"]
    assert (distilled["init"], distilled["disc_batch"]) == ("prefix", 8)


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
