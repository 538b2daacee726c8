"""scripts/results.py: the commands it records (quoted by the README table and the students' cards) are the
runs it makes."""
import json
import shlex

import pytest
import torch

from gandistill.checkpoint import save_gan, weights_sha256
from gandistill.cli import build_parser, config_from_args
from gandistill.config import DistillConfig, TrainConfig

from .conftest import load_script, needs_shipped, tiny_discriminator, tiny_generator

TEACHER_CFG = {"family": "dcgan", "base_channels": 64, "resolution": 32, "channels": 1}


def _args(*argv):
    results = load_script("results")
    return results, results.parser().parse_args(list(argv))


@pytest.mark.parametrize("argv", [(), ("--disc-batch", "8", "--steps", "6000")])
def test_every_recorded_command_parses_to_the_config_of_its_run(argv):
    results, args = _args(*argv)
    runs = results.plan(args, TEACHER_CFG)
    assert [r["name"] for r in runs] == [
        "distill-w0.5", "distill-w0.25", "distill-w0.125", "scratch-w0.5", "scratch-w0.25", "scratch-w0.125",
        "ablate-no-pixel", "ablate-no-feature", "ablate-no-disc_feature", "ablate-no-disc_kl",
        "ablate-no-adversarial"]
    parser = build_parser()
    for r in runs:
        argv = shlex.split(r["command"])
        assert argv[:2] == ["gandistill", r["kind"]]
        cls = DistillConfig if r["kind"] == "distill" else TrainConfig
        from_cli = config_from_args(cls, parser.parse_args(argv[1:]))
        assert from_cli == cls(out=r["out"], **r["kwargs"]), r["name"]
        assert from_cli.steps == args.steps
        if r["kind"] == "distill":  # the scratch GANs train their discriminator on every image
            assert from_cli.disc_batch == args.disc_batch and "--disc-batch" in argv  # stated, even at 0


@pytest.mark.parametrize("kind", ["distill", "train"])
def test_no_setting_of_a_row_comes_from_todays_defaults(kind):
    """Each row's command, parsed with every default replaced by a marker, still sets every setting that shapes the
    weights (None-valued paths aside: no flag gives None; for distill rows the size settings added since, which
    DISTILL_ADDED reads as a width's)."""
    import argparse
    import dataclasses

    from gandistill.cli_args import add_config_flags
    from gandistill.config import DISTILL_BOOKKEEPING

    results, args = _args()
    cls = DistillConfig if kind == "distill" else TrainConfig
    parser = argparse.ArgumentParser()
    add_config_flags(parser, cls)
    marker = object()
    parser.set_defaults(**{f.name: marker for f in dataclasses.fields(cls)})
    for r in (r for r in results.plan(args, TEACHER_CFG) if r["kind"] == kind):
        parsed = vars(parser.parse_args(shlex.split(r["command"])[2:]))
        from_defaults = {k for k, v in parsed.items() if v is marker} - DISTILL_BOOKKEEPING - {"snapshot_every"}
        expected = {"data_root", "classifier", "widths", "macs", "balance"} if kind == "distill" else \
            {"data_root", "init_from"}
        assert from_defaults == expected, (r["name"], from_defaults)


def test_scratch_baseline_gets_a_wider_discriminator_and_ablations_zero_one_term():
    results, args = _args("--widths", "0.5", "0.25")
    runs = {r["name"]: r for r in results.plan(args, TEACHER_CFG)}
    assert runs["scratch-w0.25"]["kwargs"]["d_width"] == 0.5
    assert runs["scratch-w0.5"]["kwargs"]["d_width"] == 1.0  # capped at the teacher's width
    assert runs["scratch-w0.25"]["kwargs"]["base_channels"] == 64
    for term in results.ABLATION_TERMS:
        kwargs = runs[f"ablate-no-{term}"]["kwargs"]
        assert kwargs[term] == 0.0 and kwargs["width"] == 0.25
        assert all(kwargs.get(other, None) != 0.0 for other in results.ABLATION_TERMS if other != term)


def _record(name, fid, params, macs, img_s, paired=None):
    result = {"model": name, "metrics": {"fid10k[fmnist-cnn]": fid, "kid10k[fmnist-cnn]": fid / 100},
              "paired": paired}
    prof = {"model": name, "params": params, "macs": macs, "throughput_img_s": img_s, "throughput_batch": 64}
    return result, prof


def test_readme_table_rows_carry_the_measured_numbers(tmp_path):
    results = load_script("results")
    recs = [_record("teacher", 6.343, 1_066_881, 17_448_960, 2415.2),
            _record("distill-w0.25", 41.66, 143_841, 1_216_512, 13440.4, {"psnr": 19.364, "ssim": 0.71784}),
            _record("ablate-no-disc_kl", 44.1, 143_841, 1_216_512, 13001.0, {"psnr": 19.0, "ssim": 0.7})]
    report = {"results": [r for r, _ in recs], "profiles": [p for _, p in recs]}
    inception = [{"model": "teacher", "metrics": {"fid1k[inception]": 30.5}},
                 {"model": "distill-w0.25", "metrics": {"fid1k[inception]": 61.25}}]
    (tmp_path / "report.json").write_text(json.dumps(report))
    (tmp_path / "inception.json").write_text(json.dumps(inception))
    (tmp_path / "timings.json").write_text(json.dumps({"distill-w0.25": {"seconds": 402.0, "torch_threads": 2}}))
    assert results.main(["--out", str(tmp_path), "--table-only"]) == 0
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert lines[0].split(" | ")[4:9] == ["img/s (CPU, batch 64)", "fid10k[fmnist-cnn]", "kid10k[fmnist-cnn]",
                                          "PSNR / SSIM vs teacher", "fid1k[inception]"]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [c[1] for c in cells] == ["`teacher`", "`distill-w0.25`", "`ablate-no-disc_kl`"]
    assert cells[0] == ["teacher", "`teacher`", "1,066,881", "17.45M", "2,415", "6.343", "0.06343", "-", "30.5", "-"]
    assert cells[1][0] == "distilled, width 0.25" and cells[1][7:] == ["19.36 dB / 0.718", "61.25", "6.7 min (2 threads)"]
    assert cells[2][0] == "distilled without disc_kl" and cells[2][8:] == ["-", "-"]


def test_a_run_distilled_from_other_teacher_weights_is_refused(tmp_path, capsys):
    results = load_script("results")
    teacher = tmp_path / "teacher"
    save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), teacher)
    student = tmp_path / "out" / "distill-w0.5" / "student"
    student.mkdir(parents=True)
    lineage = {"teacher": {"weights_sha256": "0" * 64}}
    (student / "config.json").write_text(json.dumps({"lineage": lineage}))
    argv = ["--teacher", str(teacher), "--out", str(tmp_path / "out"), "--widths", "0.5", "--ablate"]
    assert results.main(argv) == 1
    err = capsys.readouterr().err
    assert "distilled from other teacher weights (sha256 000000000000...)" in err and "delete" in err
    assert not (tmp_path / "out" / "timings.json").exists()  # nothing ran


def test_a_run_made_with_other_settings_is_refused_not_skipped(tmp_path, capsys):
    results = load_script("results")
    teacher = tmp_path / "teacher"
    save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), teacher)
    run = tmp_path / "out" / "distill-w0.5"
    run.mkdir(parents=True)
    # a finished run from before --disc-batch existed (all images through the discriminators, not recorded), and
    # one setting that such an old state did not record and that has no old meaning (g_lr here)
    # (a state then recorded lr_schedule and feature_kind: they came before disc_batch)
    config = {"teacher": "elsewhere/teacher", "width": 0.5, "steps": 1500, "batch_size": 64, "seed": 0,
              "lr_schedule": "cosine", "feature_kind": "mse"}
    torch.save({"kind": "distill", "step": 1500, "config": config}, run / "state.pt")
    argv = ["--teacher", str(teacher), "--out", str(tmp_path / "out"), "--widths", "0.5", "--ablate", "--steps",
            "1500"]
    assert results.settings_differ(torch.load(run / "state.pt"), {"teacher": str(teacher), "width": 0.5, "steps": 1500, "g_lr": 1.0}) == []
    assert results.main([*argv, "--disc-batch", "8"]) == 1
    err = capsys.readouterr().err
    assert "made with other settings (disc_batch: 0 -> 8)" in err and "delete" in err
    assert not (tmp_path / "out" / "timings.json").exists()  # nothing ran
    assert results.main([*argv, "--disc-batch", "8", "--steps", "6000"]) == 1
    assert "(steps: 1500 -> 6000; disc_batch: 0 -> 8)" in capsys.readouterr().err


@needs_shipped  # the runs read Fashion-MNIST
def test_runs_record_their_wall_time_and_threads_and_are_skipped_when_done(tmp_path, capsys):
    results = load_script("results")
    teacher = tmp_path / "teacher"
    save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), teacher)
    out = tmp_path / "out"
    out.mkdir()
    # an entry written before segments' thread counts were kept apart (one int), from an interrupted run
    (out / "timings.json").write_text(json.dumps({"distill-w0.5": {"seconds": 10.0, "torch_threads": 2}}))
    argv = ["--teacher", str(teacher), "--out", str(out), "--widths", "0.5", "--ablate", "--steps", "2",
            "--batch-size", "8", "--only-runs"]
    assert results.main(argv) == 0
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"distill-w0.5", "scratch-w0.5"}
    assert timings["distill-w0.5"]["seconds"] > 10.0 and timings["distill-w0.5"]["torch_threads"] == [1, 2]
    assert timings["scratch-w0.5"]["seconds"] > 0.0 and timings["scratch-w0.5"]["torch_threads"] == [1]
    assert results.threads_text(timings["distill-w0.5"]) == "1/2"
    assert results.teacher_of(out / "distill-w0.5") == weights_sha256(teacher)
    capsys.readouterr()
    assert results.main(argv) == 0  # finished runs are not run again
    assert capsys.readouterr().out.splitlines() == ["distill-w0.5: done", "scratch-w0.5: done"]
    assert json.loads((out / "timings.json").read_text()) == timings


def test_plot_rows_come_from_the_table_as_printed(tmp_path):
    """--plot-from reads back what readme_table() wrote: every row, its MACs and its first FID column."""
    results = load_script("results")
    report = {"profiles": [{"model": n, "params": 10, "macs": m, "throughput_img_s": 1.0, "throughput_batch": 64}
                           for n, m in (("teacher", 17.45e6), ("distill-w0.25", 1.22e6), ("ablate-no-pixel", 1.22e6))],
              "results": [{"model": n, "metrics": {"fid10k[fmnist-cnn]": f, "kid10k[fmnist-cnn]": 0.1}}
                          for n, f in (("teacher", 6.343), ("distill-w0.25", 49.58), ("ablate-no-pixel", 48.96))]}
    table = results.readme_table(report, [], {})
    rows = results.rows_from_table("# title\n\n" + table + "\nafter\n| not | a | row |\n")
    assert [(r["model"], r["width"], r["macs"], r["fid"]["mean"]) for r in rows] == [
        ("teacher", 1.0, 17.45e6, 6.343), ("distill-w0.25", 0.25, 1.22e6, 49.58), ("ablate-no-pixel", 0.25, 1.22e6, 48.96)]
    assert rows[0]["fid"]["key"] == "fid10k[fmnist-cnn]"
    assert results.main(["--plot-from", str(_write(tmp_path / "t.md", table)), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "fid_vs_macs.png").stat().st_size > 10_000


def _write(path, text):
    path.write_text(text)
    return path
