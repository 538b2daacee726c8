"""The report: files exist and parse, the table states the protocol, mean ± std, IS unavailable; CLI end to end."""
import copy
import json

import pytest
import torch
from PIL import Image

from gandistill.checkpoint import save_pretrained
from gandistill.cli import main
from gandistill.config import ClassifierConfig
from gandistill.data import load_dataset
from gandistill.metrics import FID_BIAS_NOTE, IS_UNAVAILABLE
from gandistill.models import build_model
from gandistill.report import protocol_line, write_report
from gandistill.students import make_student

from .conftest import tiny_generator

PROTOCOL = {"dataset": "fashion-mnist", "split": "test", "num_samples": 2000, "extractor": "inception",
            "weights_sha256": "ab" * 32, "weights_source": "converted", "seeds": [0, 1, 2], "num_real": 2000,
            "resolution": 32, "kid_subset_size": 1000, "latents": "numpy", "torch_fidelity": "0.4.0"}


def record(model: str, width: float, macs: int, fid: float, paired: dict | None = None) -> dict:
    return {"model": model, "family": "dcgan", "width": width, "params": int(macs / 10), "macs": macs,
            "protocol": dict(PROTOCOL),
            "metrics": {"fid2k[inception]": fid, "kid2k[inception]": fid / 1000, "is2k[inception]": None},
            "metrics_std": {"fid2k[inception]": 0.5, "kid2k[inception]": 0.0001},
            "paired": paired, "notes": [f"{IS_UNAVAILABLE} (inception: converted)", FID_BIAS_NOTE]}


def profile_result(model: str, latency: float, throughput: float, macs: int, teacher: str | None = None) -> dict:
    out = {"model": model, "device": "cpu", "threads": 1, "macs": macs, "params": int(macs / 10),
           "latency_ms_p50": latency, "latency_ms_p90": latency * 1.2, "throughput_img_s": throughput,
           "peak_memory_mb": 1.0}
    if teacher:
        out["teacher"] = teacher
    return out


def test_write_report_files_parse_and_state_the_protocol(tmp_path):
    results = [record("teacher", 1.0, 4_000_000, 20.0),
               record("student", 0.25, 400_000, 30.0, {"teacher": "teacher", "psnr": 21.5, "ssim": 0.71,
                                                       "feature_l2": 3.0, "num": 100})]
    profiles = [profile_result("teacher", 4.0, 1000.0, 4_000_000),
                profile_result("student", 1.0, 5000.0, 400_000, teacher="teacher")]
    grid = tmp_path / "out" / "g.png"
    grid.parent.mkdir()
    Image.new("L", (10, 10)).save(grid)
    paths = write_report(results, profiles, tmp_path / "out", grids={"student samples": grid})
    md = paths["markdown"].read_text()
    data = json.loads(paths["json"].read_text())
    with Image.open(paths["plot"]) as im:
        assert im.format == "PNG" and im.size[0] > 100

    assert protocol_line(PROTOCOL) in md and "seeds 0, 1, 2 (mean ± std across seeds)" in md
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    for column in ("width", "params", "MACs", "latency", "throughput", "fid2k[inception]", "kid2k[inception]",
                   "is2k[inception]", "PSNR", "speed-up"):
        assert column in header
    student_row = next(line for line in md.splitlines() if line.startswith("| `student`"))
    assert "30.00 ± 0.50" in student_row and "unavailable" in student_row and "21.50 / 0.7100" in student_row
    assert "4.00x latency" in student_row and "5.00x throughput" in student_row and "10.00x fewer MACs" in student_row
    assert IS_UNAVAILABLE in md and "biased" in md and "g.png" in md
    assert [r["model"] for r in data["rows"]] == ["teacher", "student"]
    assert data["rows"][1]["speedup"]["mac_ratio"] == pytest.approx(10.0)
    assert data["rows"][0]["is"]["mean"] is None and data["protocol"]["seeds"] == [0, 1, 2]


def test_write_report_refuses_mixed_protocols(tmp_path):
    a = record("a", 1.0, 1000, 1.0)
    b = copy.deepcopy(record("b", 0.5, 500, 2.0))
    b["protocol"]["num_samples"] = 10_000
    with pytest.raises(ValueError, match="num_samples"):
        write_report([a, b], out=tmp_path)


@pytest.fixture
def tiny_models(tmp_path):
    teacher = tiny_generator("dcgan")
    save_pretrained(teacher, tmp_path / "teacher")
    save_pretrained(make_student(teacher, 0.5), tmp_path / "student")
    cls = build_model("classifier", "fmnist-cnn", ClassifierConfig(width=4, feature_dim=16, num_classes=4))
    for m in cls.modules():  # batch-norm statistics from data, so the untrained features are not degenerate
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        cls.train()(load_dataset("synthetic", "train").batch(torch.arange(128)))
    save_pretrained(cls.eval(), tmp_path / "cls")
    return tmp_path


def test_cli_report_end_to_end(tiny_models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    rc = main(["report", str(tiny_models / "teacher"), str(tiny_models / "student"), "--out", str(out),
               "--dataset", "synthetic", "--num-samples", "64", "--seeds", "0,1", "--extractor-weights",
               str(tiny_models / "cls"), "--paired", "8", "--latency-runs", "3", "--throughput-batch", "8",
               "--sample-num", "16"])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((out / "report.json").read_text())
    assert [r["model"] for r in data["rows"]] == [str(tiny_models / "teacher"), str(tiny_models / "student")]
    student = data["rows"][1]
    assert student["fid"]["key"] == "fid64[fmnist-cnn]" and student["fid"]["std"] is not None
    assert student["psnr"] is not None and student["speedup"]["mac_ratio"] > 1
    assert data["protocol"]["seeds"] == [0, 1]
    md = (out / "report.md").read_text()
    assert "fid64[fmnist-cnn]" in md and "±" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "fid_vs_macs.png" in pngs and len(pngs) == 4  # plot, two sample grids, one teacher/student grid
    for name in pngs:
        with Image.open(out / name) as im:
            im.verify()

    # eval on the same models: one JSON line per generator, the same FID as the report's first seed
    rc = main(["eval", str(tiny_models / "teacher"), str(tiny_models / "student"), "--dataset", "synthetic",
               "--num-samples", "64", "--extractor-weights", str(tiny_models / "cls"), "--paired", "8",
               "--out", str(tmp_path / "eval.jsonl")])
    assert rc == 0
    lines = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    per_seed0 = data["results"][1]["per_seed"]["0"]["fid64[fmnist-cnn]"]
    assert lines[1]["metrics"]["fid64[fmnist-cnn]"] == pytest.approx(per_seed0, rel=1e-6)
    assert "PSNR" in capsys.readouterr().out


def test_cli_eval_errors(tiny_models, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects it before main's handler runs
        main(["eval", str(tiny_models / "teacher"), "--metrics", "fid,psnr"])
    assert exit_info.value.code == 2
    assert main(["eval", str(tiny_models / "teacher"), "--num-samples", "0", "--dataset", "synthetic"]) == 2
    assert main(["eval", str(tiny_models / "teacher"), "--seeds", "1,1", "--dataset", "synthetic"]) == 2
    assert main(["eval", str(tiny_models / "teacher"), "--dataset", "synthetic",
                 "--extractor-weights", str(tiny_models / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "psnr" in err and "num_samples" in err and "seeds" in err and "train-classifier" in err


def test_make_report_times_its_generators_together_in_interleaved_rounds(tmp_path, monkeypatch):
    import gandistill.report as report_mod

    from .conftest import tiny_generator
    from .test_metrics import tiny_classifier

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    from gandistill.checkpoint import save_pretrained

    save_pretrained(tiny_generator("dcgan"), tmp_path / "t")
    save_pretrained(tiny_generator("dcgan", width=0.5), tmp_path / "s")
    calls = []
    real = report_mod.profile_models

    def recording(models, **kw):
        calls.append(list(models))
        return real(models, **{**kw, "rounds": 2})

    monkeypatch.setattr(report_mod, "profile_models", recording)
    monkeypatch.setattr(report_mod, "profile_model", lambda *a, **k: pytest.fail("timed alone"))
    report_mod.make_report(["t", "s"], out="rep", dataset="synthetic", metrics=("fid",), num_samples=20, paired=0,
                           latency_runs=2, throughput_batch=2, sample_num=0,
                           extractor_weights=tiny_classifier(tmp_path / "cls"))
    assert len(calls) == 1 and len(calls[0]) == 2  # one interleaved timing of both, not one profile() each
    profiles = json.loads((tmp_path / "rep" / "report.json").read_text())["profiles"]
    assert [p["rounds"] for p in profiles] == [2, 2]


def test_plot_labels_never_overlap_and_stay_near_their_points():
    from gandistill.report import spread_labels

    far = [0.1, 0.5, 0.9]
    assert spread_labels(far, 0.05) == far  # nothing to move
    ys = [0.40, 0.41, 0.405, 0.9, 0.99, 0.985, 0.0]
    out = spread_labels(ys, 0.06, low=0.02, high=0.98)
    ordered = sorted(out)
    assert all(b - a >= 0.06 - 1e-12 for a, b in zip(ordered, ordered[1:], strict=False))
    assert 0.02 <= min(out) and max(out) <= 0.98
    # the labels keep their points' order; the lowest point (at 0.0) has its label at the floor, 0.02
    assert sorted(range(len(ys)), key=ys.__getitem__) == sorted(range(len(out)), key=out.__getitem__)
    assert out[-1] == 0.02
    # more labels than fit: evenly spaced from the bottom, still apart
    many = spread_labels([0.5] * 30, 0.05, 0.0, 1.0)
    assert sorted(many) == pytest.approx([0.05 * k for k in range(30)])


def test_models_at_one_cost_get_their_own_panel(tmp_path):
    from PIL import Image

    from gandistill.report import plot_fid_vs_macs, same_cost_group

    def row(name, macs, fid):
        return {"model": name, "width": 0.25, "macs": macs, "fid": {"key": "fid1k[x]", "mean": fid, "std": None},
                "kid": None}

    rows = [row("teacher", 17e6, 6.0), row("a", 1.22e6, 49.6), row("b", 1.225e6, 48.9), row("c", 1.22e6, 43.7),
            row("w0.5", 4.5e6, 23.0)]
    assert [r["model"] for r in same_cost_group(rows)] == ["a", "b", "c"]
    assert same_cost_group(rows[:3] + rows[4:]) == []  # two at one cost: the scatter labels suffice
    with_panel, without = tmp_path / "with.png", tmp_path / "without.png"
    assert plot_fid_vs_macs(rows, with_panel) == with_panel
    plot_fid_vs_macs(rows[:3], without)
    with Image.open(with_panel) as a, Image.open(without) as b:
        assert a.width > b.width  # the second panel


def test_the_plot_takes_negative_kid_and_skips_values_that_are_not_finite(tmp_path):
    from gandistill.report import plot_fid_vs_macs

    def row(name, macs, kid, std=None):
        return {"model": name, "width": 0.5, "macs": macs, "fid": None,
                "kid": {"key": "kid1k[x]", "mean": kid, "std": std}}

    path = tmp_path / "p.png"
    rows = [row("t", 17e6, -0.001), row("s", 4e6, 0.02, float("nan")), row("broken", 1e6, float("inf"))]
    assert plot_fid_vs_macs(rows, path) == path and path.stat().st_size > 10_000
    assert plot_fid_vs_macs([row("broken", 1e6, float("nan"))], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
