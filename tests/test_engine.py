"""The run plumbing both loops share: what a resume may change, learning rates after a resume, stop requests
agreed across ranks."""
import datetime
import functools
import importlib
import os
import signal

import pytest
import torch
import torch.distributed as dist

from gandistill.checkpoint import load_state, save_state
from gandistill.config import DistillConfig, TrainConfig
from gandistill.train import distill, train

from .test_train import FAST, _as_rank, _free_port, _spawn_ranks, _states_equal, _teacher_dir

train_mod = importlib.import_module("gandistill.train")


# --- resume: the run goes on with the settings it started with -------------------------------------------------

def _tamper_lrs(state_path, lr: float) -> None:
    """A state whose optimizers hold another learning rate than its config (what a resume across a schedule
    change used to leave behind)."""
    state = load_state(state_path)
    for opt in ("opt_g", "opt_d"):
        for group in state[opt]["param_groups"]:
            group["lr"] = lr
    save_state(state, state_path)


@pytest.mark.parametrize("kind", ["train", "distill"])
def test_a_resume_trains_at_the_configured_rates_not_the_ones_the_optimizers_saved(tmp_path, kind):
    out, rates = tmp_path / kind, dict(g_lr=3e-4, d_lr=1e-4, **FAST)
    if kind == "train":
        run = functools.partial(train, out=str(out), base_channels=8, **rates)
    else:  # a constant schedule sets no rate per step
        run = functools.partial(distill, teacher=str(_teacher_dir(tmp_path)), out=str(out), width=0.5,
                                lr_schedule="constant", **rates)
    run(steps=2)
    _tamper_lrs(out / "state.pt", 0.123)
    run(steps=3, resume=True)
    state = load_state(out / "state.pt")
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(3e-4)
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(1e-4)


def test_distill_resume_refuses_any_changed_training_setting_in_one_line(tmp_path):
    run = dict(teacher=str(_teacher_dir(tmp_path)), out=str(tmp_path / "d"), width=0.5, **FAST)
    distill(steps=2, lr_schedule="cosine", **run)
    changed = dict(g_lr=2e-3, lr_schedule="constant", pixel=0.5, batch_size=4, seed=1, disc_batch=2)
    with pytest.raises(ValueError) as refused:
        distill(steps=4, resume=True, **{**run, **changed})
    message = str(refused.value)
    assert "\n" not in message and message.startswith("cannot resume: ")
    for name, new in changed.items():
        old = DistillConfig.made_with(load_state(tmp_path / "d" / "state.pt")["config"])[name]
        assert f"{name} {old!r} -> {new!r}" in message
    assert "steps" not in message.split(";")[0]
    assert load_state(tmp_path / "d" / "state.pt")["step"] == 2  # nothing ran
    # the run's length and its bookkeeping (where and how often it logs, samples, saves) may change
    resumed = distill(steps=4, resume=True, **{**run, "log_every": 1, "checkpoint_every": 2, "sample_every": 3})
    assert resumed.step == 4 and resumed.status == "completed"


def test_train_resume_refuses_any_changed_training_setting_in_one_line(tmp_path):
    run = dict(out=str(tmp_path / "t"), base_channels=8, **FAST)
    train(steps=2, **run)
    with pytest.raises(ValueError, match=r"^cannot resume: batch_size 8 -> 4, g_lr 0.0002 -> 0.001, seed 0 -> 3 "):
        train(steps=4, resume=True, **{**run, "g_lr": 1e-3, "batch_size": 4, "seed": 3})
    with pytest.raises(ValueError, match=r"^cannot resume: base_channels 8 -> 16 "):
        train(steps=4, resume=True, **{**run, "base_channels": 16})
    resumed = train(steps=4, resume=True, **{**run, "log_every": 1, "snapshot_every": 4})
    assert resumed.step == 4 and (tmp_path / "t" / "snapshots" / "step0000004").is_dir()


def test_a_resume_may_move_the_data_or_change_the_card_not_the_kind_of_device():
    from gandistill.engine import _check_resumable

    saved = DistillConfig(device="cuda:0", data_root="/old/data")
    state = {"kind": "distill", "config": saved.to_dict()}
    _check_resumable(state, saved.replace(device="cuda:1", data_root="/new/data", steps=9, resume=True), "distill")
    with pytest.raises(ValueError, match=r"^cannot resume: device 'cuda:0' -> 'cpu' "):
        _check_resumable(state, saved.replace(device="cpu"), "distill")
    old = {k: v for k, v in saved.to_dict().items() if k != "disc_batch"}  # a state from before disc_batch existed
    with pytest.raises(ValueError, match=r"^cannot resume: disc_batch 0 -> 4 "):  # it ran with all images then
        _check_resumable({"kind": "distill", "config": old}, saved.replace(disc_batch=4), "distill")
    with pytest.raises(ValueError, match="holds a 'distill' run, not a 'train' run"):
        _check_resumable(state, TrainConfig(), "train")


def test_the_free_settings_are_fields_of_the_configs():
    from dataclasses import fields

    from gandistill.engine import RESUME_MAY_CHANGE

    assert RESUME_MAY_CHANGE["distill"] <= {f.name for f in fields(DistillConfig)}
    assert RESUME_MAY_CHANGE["train"] <= {f.name for f in fields(TrainConfig)}


# --- a stop request on one rank stops every rank at the same step -----------------------------------------------

def _ddp_stop_worker(rank, world, port, teacher, out, results):
    """Rank 1 alone is sent SIGTERM during its second step (as a scheduler may signal one process)."""
    if rank == 1:
        real_pixel, calls = train_mod.pixel_loss, {"n": 0}

        def pixel_then_sigterm(s, t, kind):
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return real_pixel(s, t, kind)

        train_mod.pixel_loss = pixel_then_sigterm  # this process only
    with _as_rank(rank, world, port):
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
        result = distill(teacher=teacher, out=out, width=0.5, steps=50, ema=False, **FAST)
        torch.save({"step": result.step, "status": result.status,
                    **{k: v.clone() for k, v in result.generator.state_dict().items()}}, f"{results}/rank{rank}.pt")


@pytest.mark.slow  # two processes that each import torch: ~9 s on a busy 2-core machine
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_ddp_a_stop_on_one_rank_stops_both_at_the_same_step_with_state_saved(tmp_path):
    teacher = str(_teacher_dir(tmp_path))
    _spawn_ranks(_ddp_stop_worker, (2, _free_port(), teacher, str(tmp_path / "ddp"), str(tmp_path)),
                 "DDP ranks hung after a stop request on one rank", timeout=120)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert (r0.pop("step"), r0.pop("status")) == (r1.pop("step"), r1.pop("status")) == (2, "interrupted")
    assert _states_equal(r0, r1)
    assert load_state(tmp_path / "ddp" / "state.pt")["step"] == 2


def test_each_segment_of_a_resumed_run_is_recorded(tmp_path):
    """A run records every start (fresh or resumed) with the settings it ran with, in state.pt and beside the
    student, so a card can describe every segment and not only the last."""
    import json

    from gandistill.checkpoint import load_state
    from gandistill.train import distill

    from .test_train import FAST, _teacher_dir

    teacher = str(_teacher_dir(tmp_path))
    distill(teacher=teacher, width=0.5, out=str(tmp_path / "r"), steps=2, **FAST)
    distill(teacher=teacher, width=0.5, out=str(tmp_path / "r"), steps=4, resume=True, **FAST)
    segments = load_state(tmp_path / "r" / "state.pt")["segments"]
    assert [s["from_step"] for s in segments] == [0, 2]
    assert [s["config"]["steps"] for s in segments] == [2, 4] and segments[1]["config"]["resume"] is True
    card_side = json.loads((tmp_path / "r" / "student" / "config.json").read_text())["extra"]["segments"]
    assert card_side == segments
