"""Bad weights and inputs (#20 F8-F14): checked at load, before anything is built or written, one line each."""
import json
import re
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gandistill.checkpoint import from_pretrained, save_gan, save_pretrained

from .conftest import tiny_discriminator, tiny_generator
from .test_outputs import cli, one_line, snapshot


def _rewrite(model_dir: Path, name: str, make) -> None:
    weights = model_dir / "model.safetensors"
    state = load_file(weights)
    state[name] = make(state[name])
    save_file(state, weights)


BAD_WEIGHTS = {
    "nan": (lambda t: torch.full_like(t, float("nan")), "holds non-finite values (NaN or inf)"),
    "inf": (lambda t: t.clone().index_fill_(0, torch.tensor([0]), float("inf")), "holds non-finite values"),
    "int64": (lambda t: t.to(torch.int64), "is int64, expected floating-point weights"),
    "bool": (lambda t: t.bool(), "is bool, expected floating-point weights"),
}


@pytest.mark.parametrize("bad", sorted(BAD_WEIGHTS))
def test_bad_weights_are_refused_at_load_naming_the_tensor(tmp_path, capsys, bad):
    make, message = BAD_WEIGHTS[bad]
    model_dir = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")
    name = sorted(load_file(model_dir / "model.safetensors"))[0]
    _rewrite(model_dir, name, make)
    with pytest.raises(ValueError, match=re.escape(f"model.safetensors: {name} {message}")):
        from_pretrained(model_dir)
    for argv in (["sample", model_dir, "--num", "4", "--out", tmp_path / "g.png"],
                 ["eval", model_dir, "--dataset", "synthetic", "--num-samples", "20", "--metrics", "fid"],
                 ["info", model_dir]):
        code, err = cli(argv, capsys)
        assert code == 1 and f"{name} {message}" in one_line(err), (argv, err)
    assert not (tmp_path / "g.png").exists()


def test_float8_weights_are_refused_at_load_in_one_line(tmp_path):
    model_dir = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")
    _rewrite(model_dir, "to_img.weight", lambda t: t.to(torch.float8_e4m3fn))
    with pytest.raises(ValueError, match=re.escape("to_img.weight is float8_e4m3fn, expected floating-point")):
        from_pretrained(model_dir)


def test_import_refuses_non_finite_and_integer_weights(tmp_path, capsys):
    for bad in ("nan", "int64"):
        make, message = BAD_WEIGHTS[bad]
        state = tiny_generator("dcgan", base_channels=4).state_dict()
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = make(state[name])
        torch.save(state, tmp_path / "g.pth")
        code, err = cli(["import", tmp_path / "g.pth", "--family", "dcgan", "--config", '{"base_channels": 4}',
                         "--out", tmp_path / bad], capsys)
        assert code == 1 and f"{name} {message}" in one_line(err)
        assert not (tmp_path / bad).exists()


def test_distill_from_a_nan_teacher_fails_before_writing(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    save_gan(tiny_generator("dcgan", base_channels=4), tiny_discriminator("dcgan", base_channels=4), teacher)
    _rewrite(teacher / "generator", "to_img.weight", lambda t: torch.full_like(t, float("nan")))
    code, err = cli(["distill", "--teacher", teacher, "--data", "synthetic", "--steps", "1", "--out",
                     tmp_path / "run"], capsys)
    assert code == 1 and "to_img.weight holds non-finite values" in one_line(err)
    assert not (tmp_path / "run").exists()


def test_a_discriminator_that_does_not_fit_its_generator_is_refused_before_anything_is_written(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    save_gan(tiny_generator("dcgan", base_channels=4), tiny_discriminator("dcgan", base_channels=4, resolution=64,
                                                                          channels=3), teacher)
    argv = ["distill", "--teacher", teacher, "--data", "synthetic", "--steps", "1", "--out", tmp_path / "run"]
    for _ in range(2):  # and the retry says the same, not "already holds a run"
        code, err = cli(argv, capsys)
        assert code == 1 and "the discriminator (dcgan, 64 px, 3 channels) does not fit the generator (dcgan, " \
                             "32 px, 1 channels)" in one_line(err)
        assert not (tmp_path / "run").exists()


def test_shapes_are_checked_before_a_huge_config_is_built(tmp_path, capsys):
    model_dir = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")
    meta = json.loads((model_dir / "config.json").read_text())
    meta["config"]["base_channels"] = 1500  # a 2.3 GB model if built
    (model_dir / "config.json").write_text(json.dumps(meta))
    t0 = time.perf_counter()
    code, err = cli(["info", model_dir], capsys)
    assert code == 1 and "has shape" in one_line(err) and "config.json implies" in err
    assert time.perf_counter() - t0 < 2.0  # building it took 7.7 s


def test_eval_with_a_missing_data_root_does_not_fall_back(tmp_path, capsys, tiny_fmnist, monkeypatch):
    model_dir = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")
    monkeypatch.setenv("GANDISTILL_DATA", str(tiny_fmnist))  # a copy it could silently fall back to
    code, err = cli(["eval", model_dir, "--data-root", tmp_path / "nonexistent", "--num-samples", "10",
                     "--metrics", "fid", "--no-cache"], capsys)
    assert code == 1 and "nonexistent: no such folder" in one_line(err)
    (tmp_path / "empty").mkdir()
    code, err = cli(["eval", model_dir, "--data-root", tmp_path / "empty", "--num-samples", "10",
                     "--metrics", "fid", "--no-cache"], capsys)
    assert code == 1 and "Fashion-MNIST (test) not found in" in one_line(err) and str(tiny_fmnist) not in err
    assert snapshot(tmp_path / "empty") == {}


# --- F9: eval's sample count is bounded, and a long eval shows progress -----------------------------------

def test_an_eval_too_large_for_memory_is_refused_before_any_image(tmp_path, capsys):
    model_dir = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "M")
    t0 = time.perf_counter()
    code, err = cli(["eval", model_dir, "--dataset", "synthetic", "--num-samples", 10**12, "--metrics", "fid"],
                    capsys)
    assert code == 1 and "num_samples 1,000,000,000,000: its features alone need" in one_line(err)
    assert "use at most" in err and time.perf_counter() - t0 < 5


def test_a_long_eval_shows_a_progress_bar(tmp_path, capsys, monkeypatch):
    import importlib

    from .test_metrics import tiny_classifier

    metrics = importlib.import_module("gandistill.metrics")
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    cls = tiny_classifier(tmp_path / "cls")
    g = tiny_generator("dcgan")
    kw = dict(dataset="synthetic", metrics=("fid",), paired=0, num_samples=64, extractor_weights=cls)
    capsys.readouterr()
    metrics.evaluate(g, **kw)
    assert "eval" not in capsys.readouterr().err  # a pass shorter than the delay shows nothing
    monkeypatch.setattr(metrics.evaluation, "PROGRESS_DELAY_S", 0.0)
    metrics.evaluate(g, **kw)
    err = capsys.readouterr().err
    assert "eval dcgan-w1 seed 0:" in err and "/64 [" in err and "img/s" in err


# --- F12: report grids of models whose names slug alike --------------------------------------------------

def test_report_gives_each_model_its_own_grid(tmp_path, monkeypatch):
    from gandistill.report import make_report

    from .test_metrics import tiny_classifier

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    save_pretrained(tiny_generator("dcgan"), tmp_path / "m" / "w05")
    g = tiny_generator("dcgan")
    with torch.no_grad():
        next(g.parameters()).mul_(3)  # other weights: another grid
    save_pretrained(g, tmp_path / "m_w05")
    make_report(["m/w05", "m_w05"], out="rep", dataset="synthetic", metrics=("fid",), num_samples=20, paired=0,
                profile=False, sample_num=4, extractor_weights=tiny_classifier(tmp_path / "cls"))
    grids = json.loads((tmp_path / "rep" / "report.json").read_text())["files"]["grids"]
    files = sorted(grids.values())
    assert len(files) == 2 and len(set(files)) == 2, grids
    assert (tmp_path / files[0]).read_bytes() != (tmp_path / files[1]).read_bytes()


# --- smaller defects: r1 logging, all-zero loss weights, disc_feature_loss's tap weights ---------------

def test_a_term_added_every_k_steps_is_logged_at_its_own_mean(tmp_path):
    from gandistill.train import _Log

    log = _Log(tmp_path / "log.jsonl", True, None)
    for step in range(16):
        log.add({"d_loss": torch.tensor(1.0), **({"r1": torch.tensor(4.0)} if step % 16 == 0 else {})})
    record = log.write(16, 64)
    assert record["r1"] == 4.0 and record["d_loss"] == 1.0  # r1 was logged as 4/16 = 0.25


def test_all_loss_weights_zero_is_one_line(tmp_path, capsys):
    from gandistill.config import DistillConfig

    zero = dict(pixel=0.0, feature=0.0, disc_feature=0.0, perceptual=0.0, disc_kl=0.0, class_kl=0.0, adversarial=0.0)
    with pytest.raises(ValueError, match="are all 0: nothing would train the student"):
        DistillConfig(**zero)
    argv = ["distill", "--out", tmp_path / "r", *[a for k in zero for a in (f"--{k.replace('_', '-')}", "0")]]
    code, err = cli(argv, capsys)
    assert code == 2 and "nothing would train the student" in one_line(err)
    assert not (tmp_path / "r").exists()


def test_disc_feature_tap_weights_count_only_present_taps():
    from gandistill.losses import disc_feature_loss

    feats = {"a": torch.zeros(2, 3), "b": torch.zeros(2, 3)}
    shifted = {"a": torch.ones(2, 3), "b": torch.full((2, 3), 3.0)}
    assert disc_feature_loss(shifted, feats).item() == pytest.approx(2.0)
    assert disc_feature_loss(shifted, feats, {"a": 1.0}).item() == pytest.approx(1.0)  # b left out weighs 0
    assert disc_feature_loss(shifted, feats, {"a": 1.0, "b": 3.0}).item() == pytest.approx(2.5)
    for bad in ({"a": 0.0, "b": 0.0}, {"a": 1.0, "gone": 1.0}, {"a": -1.0, "b": 1.0}):
        with pytest.raises(ValueError, match="tap_weights must be non-negative weights of taps"):
            disc_feature_loss(shifted, feats, bad)
