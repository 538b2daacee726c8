"""Commands never replace or delete a user's files: report, demo, train-classifier, import --overwrite, profile.

Each refusal is one line, checked before any work starts, and leaves the user's files byte for byte as before.
"""
import json
import os

import pytest
import torch

from gandistill.checkpoint import save_gan, save_pretrained
from gandistill.report import write_report

from .conftest import tiny_discriminator, tiny_generator
from .test_inputs import cli, one_line
from .test_outputs import DEMO, snapshot
from .test_report import record


@pytest.fixture
def model_dir(tmp_path):
    return save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")


@pytest.mark.parametrize("name", ["report.md", "report.json", "fid_vs_macs.png"])
def test_report_never_replaces_a_users_report_files(tmp_path, name):
    out = tmp_path / "r"
    write_report([record("t", 1.0, 100, 5.0)], out=out)
    write_report([record("t", 1.0, 100, 4.0)], out=out)  # its own earlier report: replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / name).write_bytes(b"my own notes\n")
    with pytest.raises(ValueError, match="was not written by this command"):
        write_report([record("t", 1.0, 100, 5.0)], out=mine)
    assert sorted(p.name for p in mine.iterdir()) == [name] and (mine / name).read_bytes() == b"my own notes\n"
    write_report([record("t", 1.0, 100, 5.0)], out=mine, overwrite=True)
    assert (mine / name).read_bytes() != b"my own notes\n"


def test_report_cli_refuses_before_evaluating_and_keeps_a_linked_report_md(tmp_path, model_dir, capsys,
                                                                           monkeypatch):
    import gandistill.report

    monkeypatch.setattr(gandistill.report, "evaluate", lambda *a, **k: pytest.fail("evaluated before the check"))
    (tmp_path / "notes.md").write_text("mine\n")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "report.md").symlink_to(tmp_path / "notes.md")
    default = tmp_path / "cwd" / "report"
    default.mkdir(parents=True)
    (default / "report.json").write_text('{"mine": true}\n')
    before = snapshot(tmp_path)
    argv = ["report", model_dir, "--dataset", "synthetic", "--num-samples", "8", "--paired", "0", "--no-profile"]
    code, err = cli([*argv, "--out", linked], capsys)
    assert code == 2 and "symbolic link" in one_line(err)
    monkeypatch.chdir(tmp_path / "cwd")
    code, err = cli(argv, capsys)  # the default --out ./report
    assert code == 2 and "report.json: exists and was not written by this command" in one_line(err)
    assert snapshot(tmp_path) == before


def test_demo_refuses_a_users_report_before_distilling(tmp_path, capsys, monkeypatch):
    import importlib

    teacher = tmp_path / "gan"
    save_gan(tiny_generator("dcgan", base_channels=4), tiny_discriminator("dcgan", base_channels=4), teacher)
    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.md").write_text("my report\n")
    (out / "student.pt").write_bytes(b"my export")
    monkeypatch.setattr(importlib.import_module("gandistill.train"), "distill", lambda *a, **k: pytest.fail("distilled before the check"))
    before = snapshot(tmp_path)
    code, err = cli([*DEMO, "--teacher", teacher, "--out", out], capsys)
    assert code == 2 and "report.md: exists and was not written by this command" in one_line(err)
    (out / "report.md").unlink()
    code, err = cli([*DEMO, "--teacher", teacher, "--out", out], capsys)
    assert code == 2 and "student.pt" in one_line(err)
    (out / "report.md").write_text("my report\n")
    assert snapshot(tmp_path) == before


def test_demo_never_deletes_a_run_it_cannot_show_it_made(tmp_path, capsys):
    teacher = tmp_path / "gan"
    save_gan(tiny_generator("dcgan", base_channels=4), tiny_discriminator("dcgan", base_channels=4), teacher)
    out = tmp_path / "demo"
    # the user's own distillation of this teacher, where the demo keeps its run
    code, err = cli(["distill", "--teacher", teacher, "--out", out / "distill", "--width", "0.5", "--steps", "2",
                     "--batch-size", "4", "--data", "synthetic", "--sample-every", "0"], capsys)
    assert code == 0, err
    (out / "distill" / "notes.txt").write_text("what I tried\n")
    save_gan(tiny_generator("dcgan", base_channels=4), None, teacher)  # the teacher retrained in place
    before = snapshot(tmp_path)
    code, err = cli([*DEMO, "--teacher", teacher, "--out", out], capsys)
    assert code == 2 and "cannot show it made it" in one_line(err)
    assert snapshot(tmp_path) == before


def test_demo_starts_over_only_the_run_it_made(tmp_path, capsys):
    teacher = tmp_path / "gan"
    save_gan(tiny_generator("dcgan", base_channels=4), tiny_discriminator("dcgan", base_channels=4), teacher)
    out = tmp_path / "demo"
    assert cli([*DEMO, "--teacher", teacher, "--out", out], capsys)[0] == 0
    first = (out / "distill" / "state.pt").read_bytes()
    save_gan(tiny_generator("dcgan", base_channels=4), tiny_discriminator("dcgan", base_channels=4), teacher)
    code, err = cli([*DEMO, "--teacher", teacher, "--out", out], capsys)  # its own report and export replaced too
    assert code == 0, err
    assert (out / "distill" / "state.pt").read_bytes() != first


def _classifier_argv(out, *extra):
    return ["train-classifier", "--data", "synthetic", "--epochs", "1", "--width", "4", "--feature-dim", "8",
            "--batch-size", "64", "--out", out, *extra]


def test_train_classifier_never_writes_over_a_model_or_a_users_folder(tmp_path, model_dir, capsys):
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "images.bin").write_bytes(b"data")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "config.json").symlink_to(model_dir / "config.json")
    before = snapshot(tmp_path)
    for out, extra, says in ((model_dir, (), "already holds files"), (data_root / "cls", ("--data-root", data_root),
                                                                      "is inside the input --data-root"),
                             (linked, ("--overwrite",), "symbolic link")):
        code, err = cli(_classifier_argv(out, *extra), capsys)
        assert code == 2 and says in one_line(err), (out, err)
    assert snapshot(tmp_path) == before


def test_train_classifier_replaces_only_its_own_classifier(tmp_path, capsys):
    out = tmp_path / "cls"
    code, err = cli(_classifier_argv(out), capsys)
    assert code == 0, err
    code, err = cli(_classifier_argv(out, "--seed", "1"), capsys)  # its own earlier classifier
    assert code == 0, err
    (out / "README.md").write_text("card\n")
    code, err = cli(_classifier_argv(out), capsys)
    assert code == 2 and "README.md" in one_line(err)


def test_import_overwrite_never_follows_a_link_out_of_out(tmp_path, model_dir, capsys):
    torch.save(tiny_generator("dcgan", base_channels=4).state_dict(), tmp_path / "g.pth")
    out = tmp_path / "imported"
    out.mkdir()
    (out / "generator").symlink_to(model_dir)
    before = snapshot(tmp_path)
    code, err = cli(["import", tmp_path / "g.pth", "--out", out, "--overwrite"], capsys)
    assert code != 0 and "symbolic link" in one_line(err)
    assert snapshot(tmp_path) == before


def test_profile_never_replaces_a_look_alike_json_list(tmp_path, model_dir, capsys):
    out = tmp_path / "p.json"
    out.write_text(json.dumps([{"model": "mine", "device": "cpu"}]) + "\n")
    code, err = cli(["profile", model_dir, "--device", "cpu", "--latency-runs", "1", "--throughput-runs", "1",
                     "--throughput-batch", "2", "--warmup", "0", "--out", out], capsys)
    assert code == 2 and "was not written by this command" in one_line(err)
    assert json.loads(out.read_text()) == [{"model": "mine", "device": "cpu"}]
    assert os.path.isfile(out)


def test_demo_never_distills_through_a_link(tmp_path, capsys):
    teacher = tmp_path / "gan"
    save_gan(tiny_generator("dcgan", base_channels=4), tiny_discriminator("dcgan", base_channels=4), teacher)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "state.pt").write_bytes(b"someone's run")
    out = tmp_path / "demo"
    out.mkdir()
    (out / "distill").symlink_to(elsewhere)
    before = snapshot(tmp_path)
    code, err = cli([*DEMO, "--teacher", teacher, "--out", out], capsys)
    assert code == 2 and "symbolic link" in one_line(err)
    assert snapshot(tmp_path) == before
