"""scripts/bench.py on tiny settings: every section runs and writes its keys. No timing is asserted: a slow or
busy machine must not fail a test."""
import json

import pytest
import torch

from gandistill.config import DistillConfig
from gandistill.train import distill

from .conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench")


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bare_loop_does_the_toolkits_arithmetic(bench, tiny_gan_dir, tmp_path):
    """The ratio toolkit / bare compares like with like: both end with bit-identical weights."""
    cfg = DistillConfig(teacher=str(tiny_gan_dir), width=0.5, batch_size=8, data="synthetic", lr_schedule="constant")
    bare = bench.BareDistill(cfg)
    bare.run(3)
    result = distill(cfg.replace(out=str(tmp_path / "d"), steps=3, sample_every=0, log_every=50))
    assert _equal(bare.ema, result.generator) and _equal(bare.d, result.discriminator)


def _positive_numbers(tree) -> list[float]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _positive_numbers(v)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def test_every_section_writes_its_keys(bench, tiny_gan_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    assert bench.main(["--teacher", str(tiny_gan_dir), "--data", "synthetic", "--out", str(out), "--rounds", "1",
                       "--min-time", "0", "--widths", "0.5,0.25", "--modes", "eager,channels_last,compile",
                       "--compile-timeout", "0.01", "--steps", "2", "--distill-rounds", "1", "--batch-size", "8", "--no-distill-channels-last",
                       "--eval-samples", "40", "--eval-inception-samples", "0", "--eval-rounds", "1"]) == 0
    r = json.loads(out.read_text())
    assert {"machine", "args", "inference", "distill", "eval", "memory"} <= set(r)
    assert r["machine"]["threads"] >= 1 and r["machine"]["cpu"]

    inf = r["inference"]
    assert set(inf["models"]) == {"teacher", "w0.5", "w0.25"} and inf["models"]["w0.25"]["mac_ratio"] > 1
    for mode in ("eager", "channels_last"):
        for batch in ("1", "64"):
            cells = inf["modes"][mode]["batches"][batch]
            assert set(cells) == {"teacher", "w0.5", "w0.25"}
            assert all(c["img_s"] > 0 and c["speedup"] > 0 and c["efficiency"] > 0 for c in cells.values())
    assert "--compile-timeout" in inf["modes"]["compile"]["skipped"]  # time-boxed, reported with the reason
    assert set(inf["target"]["efficiency"]) == {"eager", "channels_last"}

    d = r["distill"]
    assert d["bare_s_per_step"] > 0 and d["toolkit_s_per_step"] > 0 and d["ratio"] > 0 and d["target"] == 1.10
    assert set(d["bare_phases_s"]) == set(bench.BareDistill.PHASES)
    assert all(x > 0 for x in _positive_numbers(d["bare_phases_s"]))

    e = r["eval"]["fmnist-cnn"]
    if "skipped" not in e:  # needs the shipped classifier pretrained/fmnist-cnn
        assert e["num_samples"] == 40 and e["ratio"] > 0 and e["extractor_img_s"] > 0
        assert {"generators", "extractor", "metric formulas", "evaluate"} == set(e["seconds"])
    assert "skipped" in r["eval"]["inception"]

    m = r["memory"]
    assert m["peak_rss_mib"] >= m["rss_after_imports_mib"] > 0 and m["batch_size"] == DistillConfig.batch_size

    table = capsys.readouterr().out
    assert "ratio toolkit / bare" in table and "speed-up / MAC ratio" in table and "peak RSS" in table


@pytest.mark.slow
def test_onnxruntime_mode(bench, tiny_gan_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "bench.json"
    assert bench.main(["--sections", "inference", "--teacher", str(tiny_gan_dir), "--out", str(out), "--rounds", "1",
                       "--min-time", "0", "--widths", "0.5", "--modes", "onnxruntime", "--batches", "1,4"]) == 0
    cells = json.loads(out.read_text())["inference"]["modes"]["onnxruntime"]["batches"]["4"]
    assert cells["teacher"]["img_s"] > 0 and cells["w0.5"]["speedup"] > 0
