"""Students sized block by block: layer_channels, make_student(widths=...), the MACs budget, distill --macs and
gandistill search; a non-uniform student goes through every path a uniform one does."""
import json
import sys

import numpy as np
import pytest
import torch

import gandistill as gd
from gandistill.budget import MacsModel, macs_for, parse_macs, pick_widths, uniform_width
from gandistill.checkpoint import from_pretrained, save_gan, save_pretrained
from gandistill.cli import main
from gandistill.config import DCGANConfig, DistillConfig, StyleGAN2Config, width_tag
from gandistill.models import block_channels, for_inference
from gandistill.outputs import OutputRefused
from gandistill.profile import count_macs
from gandistill.students import make_student

from .conftest import tiny_discriminator, tiny_generator, trained_looking
from .test_metrics import tiny_classifier


def teacher_of(family: str, **kw):
    return trained_looking(tiny_generator(family, base_channels=16, **kw)).eval()


# --- the config ----------------------------------------------------------------------------------------

def test_layer_channels_are_counts_per_block_and_round_trip_through_json():
    c = DCGANConfig(layer_channels=[30, 7, 12])
    assert c.layer_channels == (30, 7, 12) and width_tag(c) == "c30-7-12" and width_tag(DCGANConfig(width=0.5)) == "w0.5"
    again = DCGANConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c and hash(again) == hash(c)
    g = gd.build_generator("dcgan", c)
    assert [b.conv.out_channels for b in g.blocks] == [30, 7, 12]
    assert list(block_channels("stylegan2", StyleGAN2Config(resolution=64, layer_channels=[9, 8, 7, 6, 5]))) == \
        ["b4", "b8", "b16", "b32", "b64"]


@pytest.mark.parametrize("kw, match", [
    (dict(layer_channels=[30, 7]), "one channel count per block \\(3 at resolution 32"),
    (dict(resolution=64, layer_channels=[30, 7, 12]), "4 at resolution 64"),
    (dict(layer_channels=[30, 0, 12]), "counts in \\[1, 65536\\]"),
    (dict(layer_channels=[30, True, 12]), "integers"),
    (dict(layer_channels=[30, 7.5, 12]), "integers"),
    (dict(layer_channels="30,7,12"), "integers"),
    (dict(layer_channels=[30, 7, 12], width=0.5), "width must be 1.0 when layer_channels is given"),
])
def test_bad_layer_channels_are_refused_in_one_line(kw, match):
    with pytest.raises(ValueError, match=match):
        DCGANConfig(**kw)


# --- make_student --------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_per_block_widths_take_factors_counts_or_names_and_slice_the_teachers_channels(family):
    teacher = teacher_of(family)
    full = block_channels(family, teacher.config)
    names = list(full)
    widths = [0.5, 3] + [1.0] * (len(names) - 2)
    student = make_student(teacher, widths=widths, init="l1")
    expected = (round(full[names[0]] * 0.5), 3, *list(full.values())[2:])
    assert student.config.layer_channels == expected and student.config.width == 1.0
    assert student.lineage["layer_channels"] == dict(zip(names, expected, strict=True))
    assert student.lineage["width"] is None
    assert make_student(teacher, widths=dict(zip(names, widths, strict=True)), init="l1").config == student.config
    # every student tensor is the teacher's, indexed by the kept channels of the groups it belongs to
    kept = {g.name: torch.tensor(student.lineage["kept_channels"][g.name]) for g in teacher.channel_groups()}
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for group in teacher.channel_groups():
        for name, dim in group.members:
            sliced = t_state[name].index_select(dim, kept[group.name])
            assert s_state[name].shape[dim] == sliced.shape[dim]
    first = teacher.channel_groups()[0]
    name, dim = first.score
    if family == "dcgan":  # no runtime weight scale: the tensors themselves are equal
        torch.testing.assert_close(s_state[name], t_state[name].index_select(dim, kept[first.name]), rtol=0, atol=0)
    # every block whole is the teacher itself
    whole = make_student(teacher, widths=[1.0] * len(names)).eval()
    z = torch.randn(4, teacher.z_dim)
    torch.testing.assert_close(whole(z), teacher(z), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=0.5, widths=[0.5, 0.5, 0.5]), "a width or per-block widths, one of the two"),
    (dict(), "a width or per-block widths, one of the two"),
    (dict(widths=[0.5, 0.5]), "2 given, the teacher has 3 blocks"),
    (dict(widths=[0.5, 999, 0.5]), "b8 must have 1 to 32 channels"),
    (dict(widths=[0.5, 0.0, 0.5]), "b8's factor must be in \\(0, 1\\]"),
    (dict(widths=[0.5, "8", 0.5]), "a factor \\(float\\) or a channel count \\(int\\)"),
    (dict(widths={"b4": 1.0, "b9": 1.0}), "unknown block\\(s\\) b9"),
    (dict(widths={"b4": 1.0}), "no entry for block\\(s\\) b8, b16"),
])
def test_bad_widths_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_student(teacher_of("dcgan"), **kwargs)


def test_the_lite_family_takes_one_width():
    with pytest.raises(ValueError, match="per-block widths are for the dcgan and stylegan2 families"):
        make_student(tiny_generator("stylegan2-lite"), widths=[1.0, 1.0, 1.0, 1.0])


# --- the budget ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_the_fitted_macs_are_the_counted_macs(family):
    teacher = teacher_of(family)
    model = MacsModel(teacher)
    rng = np.random.default_rng(1)
    for counts in [model.full] + [rng.integers(1, model.full + 1) for _ in range(5)]:
        assert model(counts) == pytest.approx(macs_for(teacher, counts), abs=1)
    assert macs_for(teacher, model.full) == count_macs(teacher)


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_picked_widths_meet_the_budget_at_every_balance(family):
    teacher = teacher_of(family)
    model = MacsModel(teacher)
    full = model.full
    for budget in (count_macs(teacher) // 4, count_macs(teacher) // 12):
        picks = {}
        for balance in (-1.0, -0.5, 0.0, 0.5, 1.0):
            counts = pick_widths(teacher, budget, balance, model)
            assert all(1 <= c <= f for c, f in zip(counts, full, strict=True))
            assert macs_for(teacher, counts) <= budget
            picks[balance] = np.array(counts) / full
        # balance 1 keeps the cheapest block (the first, for both families) more whole than uniform does, and
        # balance -1 less
        assert picks[1.0][0] > picks[0.0][0] > picks[-1.0][0]
    # at a uniform student's MACs, balance 0 is that student
    w = make_student(teacher, 0.5)
    assert pick_widths(teacher, count_macs(w), 0.0, model) == tuple(block_channels(family, w.config).values())
    assert uniform_width(teacher, count_macs(w), model) == pytest.approx(0.5, abs=0.02)


def test_macs_budgets_read_counts_suffixes_and_reductions():
    assert parse_macs("1.5M", 10**8) == 1_500_000 and parse_macs("250k", 10**8) == 250_000
    assert parse_macs("1500000", 10**8) == parse_macs(1.5e6, 10**8) == 1_500_000
    assert parse_macs("10x", 17_448_960) == 1_744_896 and parse_macs("2G", 10**10) == 2 * 10**9
    for bad, match in (("abc", "must be a count"), ("0.5x", "at least 1"), ("-5", "must be a count"),
                       ("2M", "more than the teacher's 1,000,000")):
        with pytest.raises(ValueError, match=match):
            parse_macs(bad, 1_000_000)
    with pytest.raises(ValueError, match="below the cheapest student"):
        pick_widths(teacher_of("dcgan"), 10, 0.5)


@pytest.mark.parametrize("kw, match", [
    (dict(width=0.5, macs="10x"), "width and macs exclude each other"),
    (dict(width=0.5, widths=[1, 2, 3]), "width and widths exclude each other"),
    (dict(widths=[1, 2, 3], macs="10x"), "widths and macs exclude each other"),
    (dict(widths=[1, 0.0, 3]), "factors must be in \\(0, 1\\]"),
    (dict(macs="ten"), "macs must be a count"),
    (dict(balance=1.5), "balance must be in \\[-1, 1\\]"),
])
def test_distill_settings_for_the_students_size_are_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        DistillConfig(**kw)


# --- distill --macs / --widths ---------------------------------------------------------------------------

@pytest.fixture
def teacher_dir(tmp_path):
    out = tmp_path / "teacher"
    save_gan(teacher_of("dcgan"), tiny_discriminator("dcgan", base_channels=16), out)
    return out


def test_distill_macs_picks_prints_records_and_resumes_with_its_own_settings(teacher_dir, tiny_fmnist, tmp_path,
                                                                            capsys):
    out = tmp_path / "run"
    argv = ["distill", "--teacher", str(teacher_dir), "--macs", "6x", "--balance", "0.5", "--steps", "2",
            "--batch-size", "4", "--data-root", str(tiny_fmnist), "--checkpoint-every", "1", "--sample-every", "0",
            "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    teacher = from_pretrained(teacher_dir)
    budget = count_macs(teacher) // 6
    counts = pick_widths(teacher, budget, 0.5)
    assert f"macs 6x (balance 0.5): widths b4 {counts[0]}/64, b8 {counts[1]}/32, b16 {counts[2]}/16" in err
    student = from_pretrained(out / "student")
    assert student.config.layer_channels == counts and count_macs(student) <= budget
    assert student.lineage["macs_budget"] == "6x" and student.lineage["balance"] == 0.5
    assert main([*argv[:-1], str(out), "--resume", "--steps", "3"]) == 0  # same settings: resumes
    assert main([*argv, "--resume", "--balance", "0.25"]) == 1
    assert "cannot resume: balance 0.5 -> 0.25" in capsys.readouterr().err
    # one width, per-block widths or a budget: never two
    assert main(["distill", "--teacher", str(teacher_dir), "--width", "0.5", "--macs", "6x",
                 "--out", str(tmp_path / "x")]) == 2
    assert "width and macs exclude each other" in capsys.readouterr().err and not (tmp_path / "x").exists()
    # a budget below the cheapest student is refused before anything is written
    assert main(["distill", "--teacher", str(teacher_dir), "--macs", "100000x", "--out", str(tmp_path / "y")]) == 1
    assert "below the cheapest student" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_distill_widths_flag_reads_factors_and_counts(teacher_dir, tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    assert main(["distill", "--teacher", str(teacher_dir), "--widths", "0.5,3,16", "--steps", "1", "--batch-size",
                 "4", "--data-root", str(tiny_fmnist), "--sample-every", "0", "--out", str(out)]) == 0
    student = from_pretrained(out / "student")
    assert student.config.layer_channels == (32, 3, 16)
    saved = json.loads((out / "student" / "config.json").read_text())
    assert saved["extra"]["distill"]["widths"] == [0.5, 3, 16]


# --- every path ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_a_per_block_student_survives_every_path(family, tmp_path, capsys):
    teacher = teacher_of(family)
    student = make_student(teacher, widths=[1.0, 0.25] + [0.5] * (len(block_channels(family, teacher.config)) - 2))
    if hasattr(student, "set_noise_mode"):
        student.set_noise_mode("const")
    student.eval()
    z = torch.randn(5, student.z_dim)
    path = save_pretrained(student, tmp_path / "student")
    loaded = from_pretrained(path).eval()
    torch.testing.assert_close(loaded(z), student(z), rtol=0, atol=0)
    torch.testing.assert_close(for_inference(loaded)(z), student(z), rtol=1e-5, atol=1e-5)
    assert main(["info", str(path)]) == 0
    info = capsys.readouterr().out
    assert "blocks:    b4 " in info and "per-block channels {'b4'" in info

    for fmt in ("onnx", "torchscript", "safetensors"):  # export checks parity (<= 1e-4) itself
        result = gd.export(path, fmt, tmp_path / f"s.{fmt}" if fmt != "safetensors" else tmp_path / "s-st", seed=1)
        assert result.record["check"]["passed"] if "check" in result.record else True
    if family == "dcgan":
        int8 = gd.export(path, "onnx", tmp_path / "s-int8.onnx", seed=1, quantize="int8", min_psnr=0.0)
        assert int8.record["quantize"] == "int8"
    # import of its own export: the safetensors file with the family and its config
    config = json.dumps(student.config.to_dict())
    assert main(["import", str(tmp_path / "s-st" / "model.safetensors"), "--family", family, "--config", config,
                 "--out", str(tmp_path / "imported")]) == 0
    imported = from_pretrained(tmp_path / "imported").eval()
    torch.testing.assert_close(imported(z), student(z), rtol=0, atol=0)

    prof = gd.profile(path, latency_runs=2, throughput_batch=4, rounds=1)
    assert prof["macs"] == macs_for(teacher, student.config.layer_channels)
    cls = tiny_classifier(tmp_path / "cls")
    res = gd.evaluate([path], dataset="synthetic", metrics=("fid",), num_samples=64, extractor_weights=cls,
                      paired=0)[0]
    assert res["width"] is None and res["layer_channels"] == list(student.config.layer_channels)


# --- search --------------------------------------------------------------------------------------------

def test_search_ranks_candidates_resumes_and_refuses_other_settings(teacher_dir, tiny_fmnist, tmp_path,
                                                                    monkeypatch, capsys):
    S = sys.modules["gandistill.search"]  # the module (gd.search is its function)

    cls = tiny_classifier(tmp_path / "cls")
    real_metrics = __import__("gandistill.metrics", fromlist=["image_metrics"]).image_metrics
    monkeypatch.setattr("gandistill.metrics.image_metrics",
                        lambda images, reference, **kw: real_metrics(images, reference, extractor_weights=cls, **kw))
    out = tmp_path / "search"
    argv = ["search", "--teacher", str(teacher_dir), "--macs", "5x", "--balances", "0,1", "--candidates", "20,4,6",
            "--steps", "2", "--seeds", "0,1", "--num-samples", "24", "--paired", "8", "--batch-size", "4",
            "--data-root", str(tiny_fmnist), "--disc-batch", "2", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    record = json.loads((out / "search.json").read_text())
    teacher = from_pretrained(teacher_dir)
    budget = count_macs(teacher) // 5
    ranking = record["ranking"]
    assert len(ranking) == 3 and [r["fid"] for r in ranking] == sorted(r["fid"] for r in ranking)
    assert {tuple(r["counts"]) for r in ranking} == {pick_widths(teacher, budget, 0.0), pick_widths(teacher, budget, 1.0),
                                                   (20, 4, 6)}
    for r in ranking:
        assert r["macs"] == macs_for(teacher, r["counts"]) <= budget and len(r["fid_seeds"]) == 2
        assert r["fid"] == pytest.approx(np.mean(r["fid_seeds"]))
        for seed in (0, 1):
            run = out / S.run_name(r["counts"], seed)
            assert from_pretrained(run / "student").config.layer_channels == tuple(r["counts"])
    best = ",".join(map(str, ranking[0]["counts"]))
    assert printed[-1] == record["command"] and f"--widths {best}" in printed[-1] and "--disc-batch 2" in printed[-1]
    assert (out / "table.md").read_text().count("\n| ") == 4 and (out / "search.png").stat().st_size > 1000

    # the same call again: nothing is distilled or scored again
    monkeypatch.setattr(sys.modules["gandistill.train"], "distill", lambda *a, **k: pytest.fail("distilled again"))
    monkeypatch.setattr(S, "_score", lambda *a, **k: pytest.fail("scored again"))
    assert main(argv) == 0
    assert json.loads((out / "search.json").read_text())["ranking"] == ranking
    # other settings in the same folder: refused
    assert main([*argv, "--steps", "3"]) == 2
    assert "holds a search with other settings (steps 2 -> 3)" in capsys.readouterr().err
    with pytest.raises(OutputRefused, match="files a search did not make"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "notes.txt").write_text("mine")
        gd.search(teacher=str(teacher_dir), out=str(tmp_path / "other"), macs="5x")
