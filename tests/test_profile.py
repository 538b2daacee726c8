"""profile(): parameters, MACs counted against hand arithmetic, timings without warm-up, peak memory, speed-ups."""
import json
import sys
import time
import types

import numpy as np
import pytest
import torch
from torch import nn

from gandistill.checkpoint import save_pretrained
from gandistill.cli import main
from gandistill.config import ProfileConfig
from gandistill.profile import (
    PeakTensorMemory,
    attach_speedups,
    count_macs,
    count_params,
    find_teachers,
    profile,
    profile_models,
    speedup,
)
from gandistill.students import make_student
from gandistill.timing import Settler

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
    assert "throughput_speedup_paired" not in sp  # timed in separate calls: no rounds in common
    together = profile_models([teacher, student], latency_runs=4, throughput_batch=8, throughput_runs=4, rounds=4,
                              warmup=1)
    paired = speedup(*together)
    t_rounds, s_rounds = together[0]["throughput_img_s_rounds"], together[1]["throughput_img_s_rounds"]
    per_round = [s / t for s, t in zip(s_rounds, t_rounds, strict=True)]
    assert paired["throughput_speedup_paired"] == pytest.approx(float(np.median(per_round)))


def test_onnx_files_take_their_turns_in_the_same_rounds(tmp_path, monkeypatch):
    import importlib

    from gandistill.export import export

    P = importlib.import_module("gandistill.profile")  # the module; gandistill.profile is the function
    teacher = tiny_generator("dcgan")
    student = make_student(teacher, 0.5)
    onnx = export(student, "onnx", tmp_path / "s.onnx", seed=0, layer_forms="convtranspose").path
    log = []
    real = P._Served.__init__

    def logged(self, model, *a):  # every call of every form goes through the log, in the order it ran
        real(self, model, *a)
        tag = "onnx" if self.onnx else "torch"
        self.calls = [lambda call=call, tag=tag: (log.append(tag), call())[1] for call in self.calls]

    monkeypatch.setattr(P._Served, "__init__", logged)
    sleeps = []
    monkeypatch.setattr(P, "Settler", lambda settle: Settler(settle, sleeps.append))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # one thread has no pool that spins: no pause then
    try:
        t, s, o = profile_models([teacher, student, str(onnx)], latency_runs=3, throughput_batch=4,
                                 throughput_runs=3, warmup=0, rounds=3, names=["t", "s", "o"])
    finally:
        torch.set_num_threads(threads)
    # round 1: t s o, round 2: o s t, round 3: t s o; each turn 1 batch-1 + 1 batch-4 call, and one untimed
    # batch-1 call after each pause (o in round 1, s in round 2, o in round 3)
    assert _blocks(log) == ["torch", "onnx", "torch", "onnx"] and log.count("onnx") == 8 and len(log) == 21
    # a settle pause before each turn that follows another thread pool's: torch -> onnx, onnx -> torch (x2)
    assert sleeps == [P.SETTLE_S] * 3 and o["settle_s"] == P.SETTLE_S
    assert o["rounds"] == 3 and len(o["throughput_img_s_rounds"]) == 3 and o["latency_ms_spread"][0] > 0
    assert o["params"] == s["params"] and o["macs"] == s["macs"] and o["bytes"] == onnx.stat().st_size
    assert o["peak_memory_mb"] is None and o["threads"] == s["threads"] == 2 and "2 intra-op" in o["runtime"]
    attach_speedups([t, s, o])
    assert o["teacher"] == "t" and o["speedup"]["mac_ratio"] == pytest.approx(s["speedup"]["mac_ratio"])
    # PyTorch models alone share one pool, and one thread has none that spins: no pause
    assert profile_models([teacher, student], latency_runs=2, throughput_batch=2, throughput_runs=2,
                          warmup=0)[0]["settle_s"] == 0.0
    assert profile_models([student, str(onnx)], latency_runs=2, throughput_batch=2, throughput_runs=2,
                          warmup=0)[0]["settle_s"] == 0.0


def test_onnx_profiling_without_onnx_runtime_says_what_to_install(tmp_path, monkeypatch):
    onnx = tmp_path / "g.onnx"
    onnx.write_bytes(b"not really onnx")
    monkeypatch.setitem(sys.modules, "gandistill.onnx_runtime", types.ModuleType("gandistill.onnx_runtime"))
    with pytest.raises(ValueError, match="gandistill\\[export\\]"):
        profile(onnx)
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        profile(tmp_path / "missing.onnx")


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
    assert data[1]["rounds"] == 2  # the default 5, capped by the 2 throughput runs

    # --rounds: the runs split into that many rounds (fewer rounds, more runs each)
    rc = main(["profile", str(tmp_path / "teacher"), str(tmp_path / "student"), "--latency-runs", "6",
               "--throughput-batch", "8", "--throughput-runs", "6", "--rounds", "3", "--out", str(tmp_path / "r.json")])
    data = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0 and [d["rounds"] for d in data] == [3, 3] and len(data[0]["latency_ms_rounds"]) == 3

    assert main(["profile", str(tmp_path / "missing")]) == 1
    assert main(["profile", str(tmp_path / "teacher"), "--latency-runs", "0"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "latency_runs" in err
    assert main(["profile", str(tmp_path / "teacher"), "--rounds", "0"]) == 2
    assert "rounds" in capsys.readouterr().err
    for bad in (0, True, 2.0):
        with pytest.raises((ValueError, TypeError), match="rounds"):
            ProfileConfig(rounds=bad)


class Clocked(nn.Module):
    """A generator that records its calls in ``log`` and advances a fake ``clock`` by ``ms(call index)``."""

    family = "dcgan"

    def __init__(self, name: str, log: list, clock: dict, ms):
        super().__init__()
        self.z_dim = 4
        self.fc = nn.Linear(4, 4)
        self.name, self.log, self.clock, self.ms, self.calls = name, log, clock, ms, 0
        self.config = types.SimpleNamespace(width=1.0, to_dict=lambda: {"width": 1.0})

    def forward(self, z):
        self.clock["t"] += self.ms(self.calls) / 1e3
        self.calls += 1
        self.log.append(self.name)
        return self.fc(z).view(-1, 1, 2, 2)


def _blocks(log: list) -> list:
    """The log with repeats collapsed: whose turn it was, in order."""
    return [name for i, name in enumerate(log) if i == 0 or log[i - 1] != name]


def test_rounds_interleave_the_models():
    log, clock = [], {"t": 0.0}
    teacher, student = Clocked("t", log, clock, lambda c: 10), Clocked("s", log, clock, lambda c: 2)
    results = profile_models([teacher, student], latency_runs=8, throughput_batch=2, throughput_runs=4, warmup=1,
                             rounds=4, timer=lambda: clock["t"], names=["t", "s"])
    timed = log[4:]  # after the warm-up: one batch-1 and one batch-2 call each
    # rounds of 2 latency + 1 throughput runs, the order reversed every other round, then the memory pass
    assert _blocks(timed)[:5] == ["t", "s", "t", "s", "t"]
    assert timed[:12] == ["t"] * 3 + ["s"] * 6 + ["t"] * 3  # t | s s | t
    t, s = results
    assert t["rounds"] == s["rounds"] == 4 and len(s["latency_ms_rounds"]) == 4
    assert t["latency_ms_rounds"] == pytest.approx([10.0] * 4) and s["latency_ms_spread"] == pytest.approx([2.0, 2.0])
    assert s["throughput_img_s_rounds"] == pytest.approx([1000.0] * 4)
    assert s["throughput_img_s"] == pytest.approx(1000.0) and s["latency_ms_p50"] == pytest.approx(2.0)
    sp = speedup(t, s)
    assert sp["latency_speedup"] == pytest.approx(5.0) and "inconclusive" not in sp


def test_a_speedup_the_spread_cannot_support_is_refused_in_one_line():
    log, clock = [], {"t": 0.0}
    teacher = Clocked("t", log, clock, lambda c: 10)
    # the student: 1 ms in even rounds, 9 ms in odd ones (two calls a round: one latency, one throughput run)
    student = Clocked("s", log, clock, lambda c: 1 if (c // 2) % 2 == 0 else 9)
    t, s = profile_models([teacher, student], latency_runs=4, throughput_batch=2, throughput_runs=4, warmup=0,
                          rounds=4, timer=lambda: clock["t"])
    assert s["latency_ms_rounds"] == pytest.approx([1.0, 9.0, 1.0, 9.0])
    assert s["latency_ms_spread"] == pytest.approx([1.0, 9.0])  # p10, p90 of the round medians
    note = speedup(t, s)["inconclusive"]
    assert note.startswith("timings too noisy to compare: the latency speed-up lies anywhere between")
    assert "\n" not in note


def test_cli_profile_says_when_timings_are_too_noisy(tmp_path, capsys, monkeypatch):
    import importlib
    import itertools

    P = importlib.import_module("gandistill.profile")  # the module; gandistill.profile is the function

    teacher = tiny_generator("dcgan")
    save_pretrained(teacher, tmp_path / "teacher")
    save_pretrained(make_student(teacher, 0.5), tmp_path / "student")
    clock = itertools.accumulate(itertools.cycle([0.001, 0.001, 0.2, 0.001, 0.05, 0.001, 0.001]))
    real = P.profile_models
    monkeypatch.setattr(P, "profile_models", lambda *a, **k: real(*a, **k, timer=lambda: next(clock)))
    assert main(["profile", str(tmp_path / "teacher"), str(tmp_path / "student"), "--latency-runs", "10",
                 "--throughput-batch", "4", "--throughput-runs", "5"]) == 0
    out = capsys.readouterr().out
    assert "rounds p10-p90" in out
    assert "timings too noisy to compare" in out and "x latency" not in out and "fewer MACs" in out


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_profile_on_cuda_synchronises_and_reports_allocator_peak():
    g = tiny_generator("dcgan")
    r = profile(g, device="cuda", latency_runs=5, throughput_batch=64, throughput_runs=3, warmup=2)
    assert r["device"].startswith("cuda") and r["peak_memory_kind"] == "CUDA allocator peak"
    assert r["peak_memory_mb"] * 2**20 >= 64 * 32 * 32 * 4  # at least the output batch
    assert 0 < r["latency_ms_p50"] <= r["latency_ms_p90"]
    assert next(g.parameters()).device.type == "cpu", "the model goes back where it was"
