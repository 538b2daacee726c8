"""Never lose a user's files: every command writes only under its output path, follows no link out of it,
replaces nothing it did not make unless asked (--overwrite), and refuses when the output is one of its inputs.

Each destructive case ends with the user's files byte for byte as before.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gandistill.checkpoint import save_gan, save_pretrained
from gandistill.outputs import OutputRefused, RunLocked, check_not_input, run_lock
from gandistill.train import distill, train

from .conftest import tiny_discriminator, tiny_generator
from .test_inputs import cli

FAST = dict(data="synthetic", batch_size=4, log_every=1, sample_every=0, checkpoint_every=5)
TRAIN = ["train", "--base-channels", "4", "--steps", "1", "--batch-size", "2", "--sample-every", "0",
         "--log-every", "1", "--data", "synthetic"]


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` (links not followed) -> its bytes, link target, or 'dir'."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = path.read_bytes()
    return found




def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def gan_dir(tmp_path) -> Path:
    out = tmp_path / "gan"
    save_gan(tiny_generator("dcgan", base_channels=4), tiny_discriminator("dcgan", base_channels=4), out)
    (out / "README.md").write_text("my model card\n")
    return out


# --- F1: train / distill into folders that hold other files ---------------------------------------------

def test_train_into_a_gan_folder_is_refused_and_leaves_it_as_it_was(gan_dir, capsys):
    before = snapshot(gan_dir)
    code, err = cli([*TRAIN, "--out", gan_dir], capsys)
    assert code == 2 and "already holds files this command did not make" in one_line(err)
    assert "--overwrite" in err
    assert snapshot(gan_dir) == before


def test_train_with_overwrite_writes_into_a_used_folder(gan_dir, capsys):
    code, err = cli([*TRAIN, "--out", gan_dir, "--overwrite"], capsys)
    assert code == 0, err
    assert (gan_dir / "README.md").read_text() == "my model card\n"  # only what the run makes is replaced
    assert (gan_dir / "state.pt").is_file()


def test_distill_into_its_teacher_is_refused(gan_dir, tmp_path, capsys):
    before = snapshot(tmp_path)
    for out in (gan_dir, gan_dir / "discriminator", tmp_path):  # the teacher, inside it, above it
        code, err = cli(["distill", "--teacher", gan_dir, "--data", "synthetic", "--steps", "1", "--overwrite",
                         "--out", out], capsys)
        assert code == 2 and "the input --teacher" in one_line(err), (out, err)
    assert snapshot(tmp_path) == before


def test_a_finished_run_without_its_state_is_not_replaced(gan_dir, tmp_path, capsys):
    run = tmp_path / "run"
    distill(teacher=str(gan_dir), out=str(run), width=0.5, steps=2, **FAST)
    (run / "state.pt").unlink()
    before = snapshot(run)
    code, err = cli(["distill", "--teacher", gan_dir, "--data", "synthetic", "--steps", "1", "--out", run], capsys)
    assert code == 2 and "did not make (discriminator, log.jsonl, samples, ...)" in one_line(err)
    assert snapshot(run) == before


def test_a_run_is_not_restarted_without_overwrite_and_resume_excludes_it(gan_dir, tmp_path):
    run = tmp_path / "run"
    train(out=str(run), base_channels=4, steps=1, **FAST)
    with pytest.raises(OutputRefused, match="already holds a run; pass --resume to continue it, --overwrite"):
        train(out=str(run), base_channels=4, steps=1, **FAST)
    with pytest.raises(ValueError, match="overwrite and resume exclude each other"):
        train(out=str(run), base_channels=4, steps=1, resume=True, overwrite=True, **FAST)
    assert train(out=str(run), base_channels=4, steps=1, overwrite=True, **FAST).status == "completed"


def test_train_refuses_its_init_from_and_data_root_as_output(gan_dir, tmp_path, capsys):
    before = snapshot(tmp_path)
    code, err = cli([*TRAIN, "--init-from", gan_dir, "--out", gan_dir / "run"], capsys)
    assert code == 2 and "is inside the input --init-from" in one_line(err)
    code, err = cli([*TRAIN[:-2], "--data", "image-folder", "--data-root", tmp_path, "--out", tmp_path / "r"], capsys)
    assert code == 2 and "is inside the input --data-root" in one_line(err)
    assert snapshot(tmp_path) == before


# --- F6: links planted in a run folder --------------------------------------------------------------------

@pytest.mark.parametrize("planted", ["log.jsonl", "student"])
def test_resume_never_writes_through_a_planted_link(gan_dir, tmp_path, capsys, planted):
    run = tmp_path / "run"
    distill(teacher=str(gan_dir), out=str(run), width=0.5, steps=2, **FAST)
    victim = tmp_path / "victim"
    if planted == "log.jsonl":
        victim.write_text('{"step": 999, "mine": true}\n')
    else:
        save_pretrained(tiny_generator("dcgan", base_channels=4), victim)
    target = run / planted
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    target.symlink_to(os.path.relpath(victim, run))
    before = snapshot(victim) if victim.is_dir() else victim.read_bytes()
    code, err = cli(["distill", "--teacher", gan_dir, "--data", "synthetic", "--steps", "4", "--batch-size", "4",
                     "--width", "0.5", "--sample-every", "0", "--log-every", "1", "--out", run, "--resume"], capsys)
    assert code == 2 and f"{target} is a symbolic link" in one_line(err)
    assert (snapshot(victim) if victim.is_dir() else victim.read_bytes()) == before


def test_the_log_is_never_appended_through_a_link(tmp_path):
    from gandistill.train import _Log

    victim = tmp_path / "victim.jsonl"
    victim.write_text("mine\n")
    (tmp_path / "log.jsonl").symlink_to(victim)
    log = _Log(tmp_path / "log.jsonl", True, resume_step=None)  # a fresh log removes the link, not the target
    log.write(1, 4)
    assert victim.read_text() == "mine\n" and not (tmp_path / "log.jsonl").is_symlink()
    (tmp_path / "log.jsonl").unlink()
    (tmp_path / "log.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        log.write(2, 4)
    assert victim.read_text() == "mine\n"


# --- F7: one process per run folder ---------------------------------------------------------------------

def test_a_second_process_on_a_locked_run_folder_is_refused(gan_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with run_lock(run):
        with pytest.raises(RunLocked, match="another gandistill process is running in this folder"):
            distill(teacher=str(gan_dir), out=str(run), width=0.5, steps=1, **FAST)
        with pytest.raises(RunLocked):
            with run_lock(run):
                pass
    assert list(run.iterdir()) == []
    with run_lock(run):  # released when the block ends
        pass


def test_the_lock_is_held_for_the_run_and_released_by_kill_9(gan_dir, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["distill", "--teacher", str(gan_dir), "--data", "synthetic", "--steps", "100000", "--batch-size", "2",
            "--width", "0.5", "--sample-every", "0", "--log-every", "1", "--checkpoint-every", "100000",
            "--out", str(run)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "gandistill", *argv], env=env, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run / "log.jsonl").is_file():  # running: it has logged a step
            assert first.poll() is None and time.time() < deadline, first.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        code, err = cli([*argv[:-2], "--out", run, "--resume"], capsys)  # the same run, resumed twice
        assert code == 1 and "another gandistill process is running in this folder" in one_line(err)
        log_before = (run / "log.jsonl").read_bytes()
        assert log_before  # the first run was not disturbed by the refusal
    finally:
        first.kill()  # SIGKILL: no handler runs, the OS drops the lock
        first.wait()
    with run_lock(run):
        pass


# --- the rule itself ------------------------------------------------------------------------------------

def test_check_not_input_sees_through_links(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "model")
    with pytest.raises(OutputRefused, match="is the input M"):
        check_not_input(tmp_path / "alias", {"M": tmp_path / "model"})
    with pytest.raises(OutputRefused, match="is inside the input M"):
        check_not_input(tmp_path / "alias" / "x.png", {"M": tmp_path / "model"})
    with pytest.raises(OutputRefused, match="holds the input M"):
        check_not_input(tmp_path, {"M": tmp_path / "model"})
    check_not_input(tmp_path / "model2", {"M": tmp_path / "model", "none": None})
    json.dumps({})  # keep the json import honest for later cases


# --- F2-F5: import, export, sample, profile -------------------------------------------------------------

@pytest.fixture
def model_dir(tmp_path) -> Path:
    out = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")
    (out / "README.md").write_text("card\n")
    (out / "extra").mkdir()
    (out / "extra" / "notes.txt").write_text("notes\n")
    return out


def test_import_never_replaces_an_existing_model(model_dir, tmp_path, capsys):
    import torch

    torch.save(tiny_generator("dcgan", base_channels=4).state_dict(), tmp_path / "g.pth")
    before = snapshot(model_dir)
    argv = ["import", tmp_path / "g.pth", "--family", "dcgan", "--config", '{"base_channels": 4}', "--out", model_dir]
    code, err = cli(argv, capsys)
    assert code == 2 and "already holds files this command did not make" in one_line(err)
    assert snapshot(model_dir) == before
    code, err = cli([*argv[:-1], tmp_path / "new"], capsys)
    assert code == 0, err
    code, err = cli([*argv[:-1], tmp_path / "new"], capsys)  # its own earlier output: asked to replace
    assert code == 2 and "--overwrite" in one_line(err)
    assert cli([*argv[:-1], tmp_path / "new", "--overwrite"], capsys)[0] == 0


def test_export_never_deletes_a_model_folder_it_did_not_write(model_dir, tmp_path, capsys):
    other = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "S")
    before = snapshot(tmp_path)
    code, err = cli(["export", other, "--format", "safetensors", "--out", model_dir], capsys)
    assert code == 2 and "exists and is not an earlier export recorded in export.json" in one_line(err)
    code, err = cli(["export", model_dir, "--format", "safetensors", "--out", model_dir / "copy"], capsys)
    assert code == 2 and "is inside the input model" in one_line(err)
    assert snapshot(tmp_path) == before
    # an earlier export is replaced without --overwrite; one edited since is not
    assert cli(["export", other, "--format", "safetensors", "--out", tmp_path / "E", "--seed", "0"], capsys)[0] == 0
    assert cli(["export", other, "--format", "safetensors", "--out", tmp_path / "E", "--seed", "1"], capsys)[0] == 0
    (tmp_path / "E" / "README.md").write_text("mine\n")
    code, err = cli(["export", other, "--format", "safetensors", "--out", tmp_path / "E"], capsys)
    assert code == 2 and (tmp_path / "E" / "README.md").read_text() == "mine\n"


@pytest.mark.parametrize("report", ["foreign-file", "folder", "link"])
def test_export_never_replaces_an_export_json_it_did_not_write(tmp_path, capsys, report):
    model = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "S")
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    if report == "foreign-file":
        (deploy / "export.json").write_text('{"my": "settings"}\n')
    elif report == "folder":
        (deploy / "export.json").mkdir()
        (deploy / "export.json" / "x").write_text("x")
    else:
        (tmp_path / "victim.json").write_text("{}\n")
        (deploy / "export.json").symlink_to(tmp_path / "victim.json")
    before = snapshot(tmp_path)
    code, err = cli(["export", model, "--format", "torchscript", "--out", deploy / "g.pt"], capsys)
    assert code == 2 and "export.json" in one_line(err)
    assert snapshot(tmp_path) == before  # and no g.pt written before the refusal
    if report == "foreign-file":
        assert cli(["export", model, "--format", "torchscript", "--out", deploy / "g.pt", "--overwrite"],
                   capsys)[0] == 0
        assert list(json.loads((deploy / "export.json").read_text())) == ["g.pt"]


@pytest.mark.parametrize("target", ["model.safetensors", "config.json", "README.md"])
def test_sample_and_profile_never_write_into_their_inputs(model_dir, tmp_path, capsys, target):
    before = snapshot(tmp_path)
    for argv in (["sample", model_dir, "--num", "4", "--out", model_dir / target],
                 ["profile", model_dir, "--device", "cpu", "--latency-runs", "1", "--throughput-runs", "1",
                  "--throughput-batch", "2", "--warmup", "0", "--out", model_dir / target],
                 ["eval", model_dir, "--out", model_dir / target]):
        code, err = cli(argv, capsys)
        assert code == 2 and "is inside the input" in one_line(err), (argv, err)
    assert snapshot(tmp_path) == before


def test_sample_and_profile_replace_only_their_own_files(model_dir, tmp_path, capsys):
    mine = tmp_path / "photo.png"
    mine.write_bytes(b"not a gandistill grid")
    notes = tmp_path / "notes.json"
    notes.write_text('{"a": 1}\n')
    profile = ["profile", model_dir, "--device", "cpu", "--latency-runs", "1", "--throughput-runs", "1",
               "--throughput-batch", "2", "--warmup", "0", "--out"]
    for argv in (["sample", model_dir, "--num", "4", "--out", mine], [*profile, notes]):
        code, err = cli(argv, capsys)
        assert code == 2 and "was not written by this command" in one_line(err), err
    assert mine.read_bytes() == b"not a gandistill grid" and notes.read_text() == '{"a": 1}\n'
    for argv in (["sample", model_dir, "--num", "4", "--out", tmp_path / "grid.png"], [*profile, tmp_path / "p.json"]):
        assert cli(argv, capsys)[0] == 0
        assert cli(argv, capsys)[0] == 0  # its own earlier file: replaced
    assert cli(["sample", model_dir, "--num", "4", "--out", mine, "--overwrite"], capsys)[0] == 0


# --- F13: the demo --------------------------------------------------------------------------------------

DEMO = ["demo", "--steps", "2", "--batch-size", "4", "--disc-batch", "4", "--data", "synthetic", "--dataset", "synthetic",
        "--num-samples", "20", "--paired", "0", "--export-format", "torchscript", "--no-verbose"]


def test_a_failed_demo_leaves_nothing_behind(gan_dir, tmp_path, capsys, monkeypatch):
    import gandistill.report

    def broken(*args, **kwargs):
        raise ValueError("evaluation failed")

    monkeypatch.setattr(gandistill.report, "make_report", broken)
    code, err = cli([*DEMO, "--teacher", gan_dir, "--out", tmp_path / "demo1"], capsys)
    assert code == 1 and err.splitlines()[-1] == "gandistill demo: error: evaluation failed"  # after the bar
    assert not (tmp_path / "demo1").exists()


def test_the_demo_refuses_a_folder_of_other_files(gan_dir, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work\n")
    before = snapshot(tmp_path)
    code, err = cli([*DEMO, "--teacher", gan_dir, "--out", mine], capsys)
    assert code == 2 and "holds files a demo does not make (thesis.tex)" in one_line(err)
    code, err = cli([*DEMO, "--teacher", gan_dir, "--out", gan_dir], capsys)
    assert code == 2 and "is the input --teacher" in one_line(err)
    assert snapshot(tmp_path) == before
