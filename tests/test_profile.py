"""profile(): parameters, MACs counted against hand arithmetic, timings without warm-up, peak memory, speed-ups."""
import json
import sys
import time
import types

import pytest
import torch
from torch import nn

from gandistill.checkpoint import save_pretrained
from gandistill.cli import main
from gandistill.profile import (
    PeakTensorMemory,
    attach_speedups,
    count_macs,
    count_params,
    find_teachers,
    profile,
)
from gandistill.students import make_student

from .conftest import tiny_generator


class LinearGenerator(nn.Module):
    """The smallest 'generator': one linear layer, z [N, 10] -> [N, 1, 4, 5]."""

    family = "dcgan"

    def __init__(self):
        super().__init__()
        self.z_dim = 10
        self.fc = nn.Linear(10, 20)

    def forward(self, z):
        return self.fc(z).view(-1, 1, 4, 5)


def test_macs_of_a_linear_layer_by_hand():
    # y = W z + b with W [20, 10]: 20 * 10 multiply-accumulates per image, whatever the batch
    assert count_macs(LinearGenerator()) == 20 * 10
    assert count_macs(LinearGenerator(), batch=7) == 20 * 10
    assert count_params(LinearGenerator()) == 20 * 10 + 20


def test_macs_of_dcgan_by_hand():
    # DCGAN 32x32, base_channels 8: z(100) -> 4x4x32 -> 8x8x16 -> 16x16x8 -> 32x32x1, transposed convs with
    # kernel 4. A transposed conv costs in_ch * out_ch * k * k MACs per *input* pixel.
    g = tiny_generator("dcgan")
    expected = (100 * 32 * 16 * 1 * 1      # 1x1 -> 4x4
                + 32 * 16 * 16 * 4 * 4     # 4x4 -> 8x8
                + 16 * 8 * 16 * 8 * 8      # 8x8 -> 16x16
                + 8 * 1 * 16 * 16 * 16)    # 16x16 -> 32x32 image
    assert count_macs(g) == expected == 346_112
    # half width: every hidden layer halves, so the inner transposed convs cost a quarter
    student = make_student(g, 0.5)
    assert count_macs(student) == 100 * 16 * 16 + 16 * 8 * 16 * 16 + 8 * 4 * 16 * 64 + 4 * 1 * 16 * 256


def test_peak_memory_counts_live_activations_only():
    model = nn.Sequential(nn.Linear(1000, 2000), nn.ReLU(), nn.Linear(2000, 500))
    with torch.no_grad(), PeakTensorMemory() as tracker:
        x = torch.zeros(64, 1000)
        y = model(x)
        del x, y
    # peak while the ReLU runs: input x, the first linear's output and the ReLU's output, float32; the
    # weights (8 MB, made before the context) and the transposed weight views are not counted
    assert tracker.peak == 4 * 64 * (1000 + 2000 + 2000)
    assert tracker.current == 0


class SlowStart(nn.Module):
    """Each of its first ``slow`` calls sleeps 0.3 s; later calls are instant."""

    family = "dcgan"

    def __init__(self, slow: int):
        super().__init__()
        self.z_dim = 4
        self.fc = nn.Linear(4, 4)
        self.calls, self.slow = 0, slow
        self.config = types.SimpleNamespace(width=1.0, to_dict=lambda: {"width": 1.0})

    def forward(self, z):
        self.calls += 1
        if self.calls <= self.slow:
            time.sleep(0.3)
        return self.fc(z).view(-1, 1, 2, 2)


def test_warmup_runs_are_not_timed():
    warm = 3  # two calls per warm-up round (batch 1 and the throughput batch)
    result = profile(SlowStart(slow=2 * warm), latency_runs=5, throughput_batch=4, throughput_runs=2, warmup=warm)
    assert result["latency_ms_p90"] < 100 and result["throughput_img_s"] > 40
    unwarmed = profile(SlowStart(slow=2 * warm), latency_runs=5, throughput_batch=4, throughput_runs=2, warmup=0)
    assert unwarmed["latency_ms_p90"] > 250


def test_profile_reports_everything():
    g = tiny_generator("dcgan").train()
    r = profile(g, latency_runs=5, throughput_batch=8, throughput_runs=2, warmup=1)
    for key in ("params", "macs", "latency_ms_p50", "latency_ms_p90", "throughput_img_s", "peak_memory_mb",
                "weights_mb", "device"):
        assert key in r
    assert r["params"] == count_params(g) and r["macs"] == count_macs(g)
    assert r["timed"] == "DCGANInference"  # timed as served: gandistill.for_inference
    assert 0 < r["latency_ms_p50"] <= r["latency_ms_p90"]
    # the [8, 1, 32, 32] float32 image alone is 32 KiB
    assert r["peak_memory_mb"] * 2**20 >= 8 * 32 * 32 * 4
    assert g.training, "the caller's mode is restored"
    with pytest.raises(ValueError, match="latency_runs"):
        profile(g, latency_runs=0)


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_profile_of_every_family_counts_macs_under_no_grad(family):
    g = tiny_generator(family)
    macs = count_macs(g)
    with torch.no_grad():  # profile() runs under no_grad; FlopCounterMode needed autograd for StyleGAN2
        assert count_macs(g) == macs > 0
    assert profile(g, latency_runs=2, throughput_batch=4, throughput_runs=1, warmup=0)["macs"] == macs


def test_speedup_next_to_mac_ratio_and_teachers_by_lineage(tmp_path):
    teacher = tiny_generator("dcgan")
    student = make_student(teacher, 0.5)
    stranger = tiny_generator("dcgan", base_channels=4)
    assert find_teachers([student, stranger, teacher]) == {0: 2}
    results = [profile(m, latency_runs=3, throughput_batch=8, throughput_runs=2, warmup=1, name=n)
               for m, n in ((teacher, "t"), (student, "s"), (stranger, "x"))]
    attach_speedups(results)
    sp = results[1]["speedup"]
    assert results[1]["teacher"] == "t" and "speedup" not in results[0] and "speedup" not in results[2]
    assert sp["mac_ratio"] == pytest.approx(count_macs(teacher) / count_macs(student))
    assert sp["latency_speedup"] == pytest.approx(results[0]["latency_ms_p50"] / results[1]["latency_ms_p50"])


def test_onnx_paths_go_to_export_profile_onnx(tmp_path, monkeypatch):
    onnx = tmp_path / "g.onnx"
    onnx.write_bytes(b"not really onnx")
    fake = types.ModuleType("gandistill.export")
    fake.profile_onnx = lambda path: {"latency_ms_p50": 1.5, "throughput_img_s": 900.0, "path": str(path)}
    monkeypatch.setitem(sys.modules, "gandistill.export", fake)
    r = profile(onnx)
    assert r["latency_ms_p50"] == 1.5 and r["model"] == str(onnx) and r["path"] == str(onnx)

    monkeypatch.setitem(sys.modules, "gandistill.export", types.ModuleType("gandistill.export"))
    with pytest.raises(ValueError, match="profile_onnx"):
        profile(onnx)


def test_cli_profile(tmp_path, capsys):
    teacher = tiny_generator("dcgan")
    save_pretrained(teacher, tmp_path / "teacher")
    save_pretrained(make_student(teacher, 0.5), tmp_path / "student")
    rc = main(["profile", str(tmp_path / "teacher"), str(tmp_path / "student"), "--latency-runs", "3",
               "--throughput-batch", "8", "--throughput-runs", "2", "--out", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "vs teacher" in out and "fewer MACs" in out
    data = json.loads((tmp_path / "p.json").read_text())
    assert [d["model"] for d in data] == [str(tmp_path / "teacher"), str(tmp_path / "student")]
    assert data[1]["speedup"]["mac_ratio"] > 1

    assert main(["profile", str(tmp_path / "missing")]) == 1
    assert main(["profile", str(tmp_path / "teacher"), "--latency-runs", "0"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "latency_runs" in err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_profile_on_cuda_synchronises_and_reports_allocator_peak():
    g = tiny_generator("dcgan")
    r = profile(g, device="cuda", latency_runs=5, throughput_batch=64, throughput_runs=3, warmup=2)
    assert r["device"].startswith("cuda") and r["peak_memory_kind"] == "CUDA allocator peak"
    assert r["peak_memory_mb"] * 2**20 >= 64 * 32 * 32 * 4  # at least the output batch
    assert 0 < r["latency_ms_p50"] <= r["latency_ms_p90"]
    assert next(g.parameters()).device.type == "cpu", "the model goes back where it was"
