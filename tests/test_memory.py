"""Memory stays flat over a long run: nothing accumulates per step (tensors, autograd graphs, log records)."""
import gc
import importlib

import pytest
import torch

from gandistill.checkpoint import save_gan

from .conftest import tiny_discriminator, tiny_generator

train_mod = importlib.import_module("gandistill.train")  # the module; gandistill.train is the function

LOG_EVERY = 5
PROBES = (11, 41)  # loss checks = steps + 1: after 10 and 40 steps, the same phase of log and checkpoint


def _live_tensors() -> tuple[int, int]:
    """(count, total bytes) of the tensors Python can reach after a full collection."""
    gc.collect()
    count, nbytes = 0, 0
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor):  # type(), not isinstance(): proxies would warn or raise
            count += 1
            nbytes += obj.numel() * obj.element_size()
    return count, nbytes


@pytest.mark.parametrize("kind", ["train", "distill"])
def test_live_tensors_do_not_grow_with_steps(tmp_path, monkeypatch, kind):
    snapshots = []
    calls = 0
    step_ok = train_mod._step_ok

    def probing_step_ok(loss, stop):  # called once per step, before the update: a fixed point in the loop
        nonlocal calls
        calls += 1
        if calls in PROBES:
            snapshots.append(_live_tensors())
        return step_ok(loss, stop)

    monkeypatch.setattr(train_mod, "_step_ok", probing_step_ok)
    common = dict(data="synthetic", batch_size=4, steps=PROBES[-1] + 1, log_every=LOG_EVERY, sample_every=0,
                  checkpoint_every=LOG_EVERY)
    if kind == "train":
        train_mod.train(out=str(tmp_path / "run"), base_channels=4, **common)
    else:
        teacher = tmp_path / "teacher"
        save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), teacher)
        train_mod.distill(teacher=str(teacher), out=str(tmp_path / "run"), width=0.5, **common)
    (n1, b1), (n2, b2) = snapshots
    # a leak of one small tensor per step would add 30 here; allow a handful for lazily built caches
    assert n2 - n1 <= 4, f"live tensors grew from {n1} to {n2} over {PROBES[1] - PROBES[0]} steps"
    assert b2 - b1 <= 64 * 1024, f"live tensor bytes grew from {b1} to {b2}"


def test_the_log_keeps_detached_sums_only(tmp_path):
    log = train_mod._Log(tmp_path / "log.jsonl", True, None)
    w = torch.ones(3, requires_grad=True)
    for _ in range(5):
        log.add({"loss": (w * 2).sum()})
    assert not log.sums["loss"].requires_grad and log.sums["loss"].grad_fn is None
    record = log.write(5, 20)
    assert record["loss"] == pytest.approx(6.0) and log.sums == {} and log.count == 0
