"""Engine: train() and distill() on tiny configs and synthetic data."""
import contextlib
import hashlib
import importlib
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from gandistill.checkpoint import from_pretrained, load_gan, load_state, save_gan
from gandistill.config import DistillConfig, TrainConfig
from gandistill.train import distill, train

from .conftest import TINY, tiny_discriminator, tiny_generator, trained_looking

train_mod = importlib.import_module("gandistill.train")  # the module; gandistill.train is the function

FAST = dict(data="synthetic", batch_size=8, log_every=5, sample_every=0, checkpoint_every=5)


def _teacher_dir(tmp_path, family="dcgan"):
    out = tmp_path / f"teacher-{family}"
    if not out.exists():
        save_gan(tiny_generator(family), tiny_discriminator(family), out)
    return out


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", ["dcgan", "stylegan2", "stylegan2-lite"])
def test_train_writes_a_gan_directory(tmp_path, family):
    extra = {"r1_gamma": 0.1, "r1_every": 2} if family != "dcgan" else {}
    result = train(out=str(tmp_path / "run"), family=family, steps=6, base_channels=TINY[family].get("base_channels", 4),
                   **{**FAST, "sample_every": 3, **extra})
    assert result.status == "completed" and result.step == 6
    g = from_pretrained(tmp_path / "run")
    assert _states_equal(g.state_dict(), result.generator.state_dict())
    assert (tmp_path / "run" / "discriminator" / "model.safetensors").exists()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 6]
    assert {"d_loss", "g_loss", "img_per_s"} <= set(records[0])
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step0000003.png", "step0000006.png"]


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_distill_logs_every_term_and_saves_a_student(tmp_path, family):
    result = distill(teacher=str(_teacher_dir(tmp_path, family)), out=str(tmp_path / "d"), width=0.5, steps=5,
                     **{**FAST, "sample_every": 5})
    assert result.status == "completed"
    student = from_pretrained(tmp_path / "d" / "student")
    assert student.lineage["width"] == 0.5 and student.config.width == 0.5
    teacher_weights = _teacher_dir(tmp_path, family) / "generator" / "model.safetensors"
    assert student.lineage["teacher"]["weights_sha256"] == hashlib.sha256(teacher_weights.read_bytes()).hexdigest()
    record = json.loads((tmp_path / "d" / "log.jsonl").read_text().splitlines()[-1])
    for term in ("pixel", "feature", "disc_feature", "disc_kl", "adversarial", "d_loss", "total"):
        assert term in record and record[term] == record[term]  # present and not NaN
    assert (tmp_path / "d" / "samples" / "step0000005.png").exists()
    state = load_state(tmp_path / "d" / "state.pt")
    assert state["step"] == 5 and state["adapters"] and state["opt_g"]["state"]
    assert {k.split(".")[0] for k in state["adapters"]} == set(student.distill_taps)  # no pre-tanh output tap


def test_teacher_is_frozen_and_a_zero_weight_turns_a_term_off(tmp_path):
    teacher_dir = _teacher_dir(tmp_path)
    before = from_pretrained(teacher_dir).state_dict()
    distill(teacher=str(teacher_dir), out=str(tmp_path / "d"), width=0.5, steps=3, feature=0.0, disc_kl=0.0,
            **FAST)
    assert _states_equal(before, from_pretrained(teacher_dir).state_dict())
    record = json.loads((tmp_path / "d" / "log.jsonl").read_text().splitlines()[-1])
    assert "feature" not in record and "disc_kl" not in record and "pixel" in record


@pytest.mark.parametrize("data", ["synthetic", "none"])
def test_disc_batch_sends_that_many_images_through_the_discriminators(tmp_path, monkeypatch, data):
    from gandistill.models.dcgan import DCGANDiscriminator
    seen = []
    original = DCGANDiscriminator.forward_features  # forward() goes through it too
    monkeypatch.setattr(DCGANDiscriminator, "forward_features",
                        lambda self, img: seen.append(img.shape[0]) or original(self, img))
    result = distill(teacher=str(_teacher_dir(tmp_path)), out=str(tmp_path / "d"), width=0.5, steps=2,
                     disc_batch=3, **{**FAST, "data": data})
    assert result.status == "completed"
    # per step: the frozen D on teacher and student images, the trained D on the student (adversarial term),
    # then on student and real images for its own update; the pixel and feature terms still see all 8
    assert seen == [3] * 5 * 2
    record = json.loads((tmp_path / "d" / "log.jsonl").read_text().splitlines()[-1])
    assert {"pixel", "disc_feature", "disc_kl", "adversarial", "d_loss"} <= set(record)
    seen.clear()
    distill(teacher=str(_teacher_dir(tmp_path)), out=str(tmp_path / "all"), width=0.5, steps=1, disc_batch=0,
            **{**FAST, "data": data})
    assert seen == [8] * 5  # 0: the whole batch
    # a StyleGAN2 discriminator's minibatch-stddev groups adapt to a batch of 3
    result = distill(teacher=str(_teacher_dir(tmp_path, "stylegan2")), out=str(tmp_path / "sg2"), width=0.5,
                     steps=1, disc_batch=3, **{**FAST, "data": data})
    assert result.status == "completed"


def _drawing_teacher_dir(tmp_path):
    """A tiny DCGAN teacher whose images spread over [-1, 1] (std ~0.66, not the near-flat images of a fresh
    one) and whose batch-norm statistics are its own activations' (a student trained on batches can match it)."""
    out = tmp_path / "drawing-teacher"
    torch.manual_seed(0)
    g = tiny_generator("dcgan")
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.normal_(0, 0.3)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
                m.momentum = None  # a cumulative average over the passes below
        g.train()
        for _ in range(20):
            g(torch.randn(64, g.z_dim))
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    save_gan(g.eval(), tiny_discriminator("dcgan"), out)
    return out


def test_data_free_distillation_moves_the_student_towards_the_teacher(tmp_path):
    """With no data (teacher images stand in for real ones) the student's images get closer to the teacher's on
    latents it never trained on: 0.56 -> 0.45 mean abs pixel distance over 40 steps (0.44 at 60, on three seeds alike)."""
    teacher_dir = _drawing_teacher_dir(tmp_path)
    teacher = from_pretrained(teacher_dir)
    z = torch.randn(64, teacher.z_dim, generator=torch.Generator().manual_seed(123))
    settings = dict(teacher=str(teacher_dir), width=0.5, ema=False, **{**FAST, "data": "none"})

    def distance(run: str) -> float:
        student = from_pretrained(tmp_path / run / "student")
        with torch.no_grad():
            return (student(z) - teacher(z)).abs().mean().item()

    assert distill(out=str(tmp_path / "before"), steps=0, **settings).status == "completed"
    result = distill(out=str(tmp_path / "after"), steps=40, **settings)
    assert result.status == "completed"
    record = json.loads((tmp_path / "after" / "log.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 40 and "pixel" in record and "adversarial" in record
    before, after = distance("before"), distance("after")
    assert after < 0.9 * before, (before, after)


@pytest.mark.parametrize("kind", ["train", "distill"])
def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path, kind):
    teacher = str(_teacher_dir(tmp_path))
    # the first leg ends at --steps 6 and the resume extends it to 10: the same run only when the learning rate does
    # not depend on --steps (a cosine schedule spans --steps; test_distill_interrupted_under_cosine_... covers it)
    run = (lambda **kw: train(base_channels=8, **kw)) if kind == "train" else \
        (lambda **kw: distill(teacher=teacher, width=0.5, lr_schedule="constant", **kw))
    full = run(out=str(tmp_path / "full"), steps=10, **FAST)
    first = run(out=str(tmp_path / "resumed"), steps=6, **{**FAST, "checkpoint_every": 4})
    assert first.step == 6
    resumed = run(out=str(tmp_path / "resumed"), steps=10, resume=True, **{**FAST, "checkpoint_every": 4})
    assert resumed.step == 10
    assert _states_equal(full.generator.state_dict(), resumed.generator.state_dict())
    assert _states_equal(full.discriminator.state_dict(), resumed.discriminator.state_dict())
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert steps == [5, 6, 10]  # no record is duplicated across the resume


def test_distill_interrupted_under_cosine_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    teacher = str(_teacher_dir(tmp_path))
    full = distill(teacher=teacher, width=0.5, out=str(tmp_path / "full"), steps=8, lr_schedule="cosine", **FAST)
    calls = {"n": 0}
    real_step_ok = train_mod._step_ok

    def step_ok_then_stop(loss, stop):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), 2)  # SIGINT after the third step's check: the run stops at step 3
        return real_step_ok(loss, stop)

    monkeypatch.setattr(train_mod, "_step_ok", step_ok_then_stop)
    first = distill(teacher=teacher, width=0.5, out=str(tmp_path / "r"), steps=8, lr_schedule="cosine", **FAST)
    assert first.status == "interrupted" and first.step == 3
    monkeypatch.setattr(train_mod, "_step_ok", real_step_ok)
    resumed = distill(teacher=teacher, width=0.5, out=str(tmp_path / "r"), steps=8, lr_schedule="cosine",
                      resume=True, **FAST)
    assert resumed.step == 8
    assert _states_equal(full.generator.state_dict(), resumed.generator.state_dict())


def test_interrupt_saves_state_and_resume_finishes(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_step_ok = train_mod._step_ok

    def step_ok_then_stop(loss, stop):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), 2)  # SIGINT, as Ctrl-C would send it
        return real_step_ok(loss, stop)

    monkeypatch.setattr(train_mod, "_step_ok", step_ok_then_stop)
    result = train(out=str(tmp_path / "r"), base_channels=8, steps=50, **{**FAST, "checkpoint_every": 100})
    assert result.status == "interrupted" and result.step == 4
    assert load_state(tmp_path / "r" / "state.pt")["step"] == 4
    assert not (tmp_path / "r" / "generator").exists()  # no final weights for an unfinished run
    monkeypatch.setattr(train_mod, "_step_ok", real_step_ok)
    assert train(out=str(tmp_path / "r"), base_channels=8, steps=6, resume=True, **FAST).step == 6


def test_resume_and_fresh_start_are_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(out=str(tmp_path / "x"), base_channels=8, steps=2, resume=True, **FAST)
    train(out=str(tmp_path / "x"), base_channels=8, steps=2, **FAST)
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        train(out=str(tmp_path / "x"), base_channels=8, steps=2, **FAST)
    with pytest.raises(ValueError, match="cannot resume: base_channels 8 -> 16"):
        train(out=str(tmp_path / "x"), base_channels=16, steps=4, resume=True, **FAST)


def test_distill_refuses_to_resume_on_a_changed_teacher(tmp_path):
    teacher_dir = _teacher_dir(tmp_path)
    distill(teacher=str(teacher_dir), out=str(tmp_path / "d"), width=0.5, steps=2, **FAST)
    distill(teacher=str(teacher_dir), out=str(tmp_path / "d"), width=0.5, steps=3, resume=True, **FAST)
    # the teacher retrained in place: same path and config, other weights
    generator, discriminator = load_gan(teacher_dir)
    with torch.no_grad():
        next(generator.parameters()).add_(0.01)
    save_gan(generator, discriminator, teacher_dir)
    with pytest.raises(ValueError, match="generator weights changed since this run started"):
        distill(teacher=str(teacher_dir), out=str(tmp_path / "d"), width=0.5, steps=4, resume=True, **FAST)


def test_non_finite_steps_are_skipped_and_recovered(tmp_path, monkeypatch):
    real_pixel = train_mod.pixel_loss
    calls = {"n": 0}

    def pixel_with_nans(s, t, kind):
        calls["n"] += 1
        loss = real_pixel(s, t, kind)
        # calls 3..6 are NaN: with max_bad_steps=3, three are skipped, then the last good state is reloaded
        return loss * float("nan") if 3 <= calls["n"] <= 6 else loss

    monkeypatch.setattr(train_mod, "pixel_loss", pixel_with_nans)
    result = distill(teacher=str(_teacher_dir(tmp_path)), out=str(tmp_path / "d"), steps=8, max_bad_steps=3,
                     lr_schedule="constant", **FAST)
    assert result.status == "completed" and result.step == 8
    assert result.bad_steps == 4
    assert all(torch.isfinite(p).all() for p in result.generator.parameters())
    state = load_state(tmp_path / "d" / "state.pt")
    assert state["lr_factor"] == 0.5
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(DistillConfig().g_lr * 0.5)


def test_distill_without_teacher_discriminator(tmp_path, capsys):
    """A generator-only teacher: disc_feature/disc_kl go off with a one-line note, a fresh D is trained."""
    save_gan(tiny_generator("dcgan"), None, tmp_path / "gonly")
    result = distill(teacher=str(tmp_path / "gonly"), out=str(tmp_path / "d"), steps=2, **FAST)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {tmp_path / 'gonly'} has no discriminator/: disc_feature and disc_kl are off; the "
                     f"adversarial term trains a fresh discriminator"]
    assert result.discriminator is not None and result.discriminator.config.spectral_norm  # our default D
    saved = json.loads((tmp_path / "d" / "student" / "config.json").read_text())["extra"]["distill"]
    assert saved["disc_feature"] == 0.0 and saved["disc_kl"] == 0.0  # what ran, recorded honestly
    records = [json.loads(line) for line in (tmp_path / "d" / "log.jsonl").read_text().splitlines()]
    assert "adversarial" in records[-1] and "disc_kl" not in records[-1]
    resumed = distill(teacher=str(tmp_path / "gonly"), out=str(tmp_path / "d"), steps=3, resume=True, **FAST)
    assert resumed.step == 3


def test_a_generator_only_teacher_with_only_disc_terms_is_refused_before_anything_is_written(tmp_path):
    save_gan(tiny_generator("dcgan"), None, tmp_path / "gonly")
    with pytest.raises(ValueError, match="has no discriminator/, so disc_feature and disc_kl cannot be used"):
        distill(teacher=str(tmp_path / "gonly"), out=str(tmp_path / "runs" / "d"), steps=2,
                **{**FAST, "pixel": 0.0, "feature": 0.0, "adversarial": 0.0, "disc_kl": 1.0})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("bad,field", [
    (dict(steps=-1), "steps"), (dict(width=0.0), "width"), (dict(kl_temperature=0.0), "kl_temperature"),
    (dict(init="best"), "init"), (dict(batch_size=0), "batch_size"), (dict(adv_loss="wgan"), "adv_loss"),
    (dict(perceptual=1.0), "classifier"), (dict(device="tpu"), "device"), (dict(g_lr=float("nan")), "g_lr"),
    (dict(disc_batch=-1), "disc_batch"), (dict(disc_batch=2.0), "disc_batch"),
])
def test_distill_config_validation(bad, field):
    with pytest.raises(ValueError, match=field):
        DistillConfig(**bad)


def test_train_config_validation():
    with pytest.raises(ValueError, match="family"):
        TrainConfig(family="fmnist-cnn")
    with pytest.raises(ValueError, match="d_width"):
        TrainConfig(d_width=2.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _as_rank(rank, world, port):
    """This spawned process as one rank of a torchrun-like launch; the process group is closed after."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _ddp_worker(rank, world, port, teacher, out, results):
    with _as_rank(rank, world, port):
        result = distill(teacher=teacher, out=out, width=0.5, steps=4, ema=False, **FAST)
        torch.save({k: v.clone() for k, v in result.generator.state_dict().items()}, f"{results}/rank{rank}.pt")


@pytest.mark.slow
def test_ddp_two_gloo_processes_end_with_identical_weights(tmp_path):
    teacher = str(_teacher_dir(tmp_path))
    mp.spawn(_ddp_worker, args=(2, _free_port(), teacher, str(tmp_path / "ddp"), str(tmp_path)), nprocs=2)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert _states_equal(w0, w1)
    before = from_pretrained(teacher)
    assert not torch.equal(w0["blocks.0.conv.weight"], before.state_dict()["blocks.0.conv.weight"][:, :w0[
        "blocks.0.conv.weight"].shape[1]])  # it trained
    assert (tmp_path / "ddp" / "student" / "model.safetensors").exists()


def _ddp_nan_worker(rank, world, port, teacher, out, results):
    """Rank 1 alone sees a NaN loss at its second step: both ranks must skip it together."""
    if rank == 1:
        real_pixel, calls = train_mod.pixel_loss, {"n": 0}

        def pixel_nan_once(s, t, kind):
            calls["n"] += 1
            return real_pixel(s, t, kind) * (float("nan") if calls["n"] == 2 else 1.0)

        train_mod.pixel_loss = pixel_nan_once  # this process only
    with _as_rank(rank, world, port):
        result = distill(teacher=teacher, out=out, width=0.5, steps=3, ema=False, **FAST)
        torch.save({"bad_steps": result.bad_steps, **{k: v.clone() for k, v in result.generator.state_dict().items()}},
                   f"{results}/rank{rank}.pt")


def _spawn_ranks(worker, args: tuple, hung: str, timeout: float = 300) -> None:
    """Run ``worker(rank, *args)`` in two processes; fail with ``hung`` (after killing them) past ``timeout``."""
    import time

    context = mp.spawn(worker, args=args, nprocs=2, join=False)
    deadline = time.time() + timeout
    while not context.join(timeout=1):
        if time.time() > deadline:  # ranks that disagree leave one waiting in a collective
            for p in context.processes:
                p.kill()
            pytest.fail(hung)


@pytest.mark.slow
def test_ddp_ranks_skip_a_non_finite_step_together(tmp_path):
    teacher = str(_teacher_dir(tmp_path))
    _spawn_ranks(_ddp_nan_worker, (2, _free_port(), teacher, str(tmp_path / "ddp"), str(tmp_path)),
                 "DDP ranks hung after a non-finite step on one rank")
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.pop("bad_steps") == w1.pop("bad_steps") == 1
    assert _states_equal(w0, w1)


def test_init_from_starts_from_a_gan_directorys_weights(tmp_path):
    first = train(out=str(tmp_path / "first"), base_channels=8, steps=4, **FAST)
    # learning rates far below float32 resolution: the weights a run starts from are the ones it ends with
    # (buffers such as BN statistics and spectral-norm vectors still move in training mode: parameters are compared)
    again = train(out=str(tmp_path / "again"), base_channels=8, steps=1, g_lr=1e-30, d_lr=1e-30, ema=False,
                  init_from=str(tmp_path / "first"), **FAST)
    shipped_g, shipped_d = load_gan(tmp_path / "first")
    for model, shipped in ((again.generator, shipped_g), (again.discriminator, shipped_d)):
        assert _states_equal(dict(model.named_parameters()), dict(shipped.named_parameters()))
    assert first.step == 4 and again.step == 1
    fresh = train(out=str(tmp_path / "fresh"), base_channels=8, steps=1, g_lr=1e-30, d_lr=1e-30, ema=False, **FAST)
    assert not torch.equal(fresh.generator.to_img.weight, again.generator.to_img.weight)


def test_init_from_refuses_other_sizes_and_generator_only_dirs(tmp_path):
    train(out=str(tmp_path / "first"), base_channels=8, steps=2, **FAST)
    with pytest.raises(ValueError, match="init-from .*pass the same family and sizes"):
        train(out=str(tmp_path / "wider"), base_channels=16, steps=1, init_from=str(tmp_path / "first"), **FAST)
    with pytest.raises(ValueError, match="no discriminator/"):
        train(out=str(tmp_path / "g-only"), base_channels=8, steps=1, init_from=str(tmp_path / "first" / "generator"),
              **FAST)


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_adapters_start_as_the_students_kept_channels(family):
    from gandistill.losses import feature_loss, make_adapters
    from gandistill.students import kept_channels_by_tap, make_student

    teacher = trained_looking(tiny_generator(family)).eval()
    z = torch.randn(16, teacher.z_dim)
    losses = {}
    for width in (1.0, 0.5):
        student = make_student(teacher, width).eval()
        with torch.no_grad():
            _, t_feats = teacher.forward_features(z)
            _, s_feats = student.forward_features(z)
        kept = kept_channels_by_tap(student)
        assert kept == {tap: student.lineage["kept_channels"][g] for tap, g in student.tap_groups.items()}
        selected = make_adapters(s_feats, t_feats, list(teacher.distill_taps), kept)
        random = make_adapters(s_feats, t_feats, list(teacher.distill_taps))
        losses[width] = [feature_loss(s_feats, t_feats, a).item() for a in (selected, random)]
    assert losses[1.0][0] < 1e-10 < 0.01 < losses[1.0][1]  # an identical student starts at 0, not at random
    assert losses[0.5][0] < losses[0.5][1]
    with pytest.raises(ValueError, match="kept channels of tap"):
        make_adapters(s_feats, t_feats, ["b4"], {"b4": [0]})


def test_distill_leaves_the_students_batch_norm_statistics_alone_before_step_0(tmp_path):
    teacher_dir = tmp_path / "t"
    save_gan(trained_looking(tiny_generator("dcgan")), tiny_discriminator("dcgan"), teacher_dir)
    distill(teacher=str(teacher_dir), out=str(tmp_path / "d"), width=1.0, steps=0, **FAST)
    teacher = from_pretrained(teacher_dir)
    state = load_state(tmp_path / "d" / "state.pt")  # the step-0 state that non-finite recovery falls back to
    assert state["step"] == 0
    for key, value in teacher.state_dict().items():
        assert torch.equal(state["student"][key], value), key
    z = torch.randn(4, teacher.z_dim)
    adapters = {k: v for k, v in state["adapters"].items()}
    for name, weight in adapters.items():  # width 1: every adapter is the identity
        assert torch.equal(weight[:, :, 0, 0], torch.eye(weight.shape[0])), name
    student = from_pretrained(tmp_path / "d" / "student")
    with torch.no_grad():
        torch.testing.assert_close(student.eval()(z), teacher.eval()(z), rtol=0, atol=1e-6)


def test_lr_schedules_decay_to_zero_over_the_run(tmp_path):
    from gandistill.train import lr_at

    assert [lr_at("constant", s, 10) for s in (0, 9)] == [1.0, 1.0]
    assert lr_at("cosine", 0, 10) == 1.0 and lr_at("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_at("linear", 5, 10) == pytest.approx(0.5) and lr_at("linear", 10, 10) == 0.0
    assert lr_at("cosine", 9, 10) < lr_at("cosine", 8, 10) < 0.1
    with pytest.raises(ValueError, match="lr schedule"):
        lr_at("step", 0, 10)
    distill(teacher=str(_teacher_dir(tmp_path)), out=str(tmp_path / "d"), width=0.5, steps=6, g_lr=1e-3, d_lr=5e-4,
            lr_schedule="linear", **FAST)
    state = load_state(tmp_path / "d" / "state.pt")
    # the last update (step index 5 of 6) ran at 1/6 of the base rates
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1e-3 / 6)
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(5e-4 / 6)
    with pytest.raises(ValueError, match="lr_schedule must be"):
        DistillConfig(lr_schedule="step")


def test_a_classifier_that_does_not_fit_the_teacher_is_refused_before_anything_is_written(tmp_path, capsys):
    from gandistill.checkpoint import save_pretrained
    from gandistill.config import ClassifierConfig
    from gandistill.models import build_model

    from .test_inputs import cli, one_line

    rgb = tmp_path / "rgb-cnn"  # takes 3-channel images; the tiny teacher draws 1-channel ones
    save_pretrained(build_model("classifier", "fmnist-cnn", ClassifierConfig(channels=3, width=4, feature_dim=8)), rgb)
    teacher = str(_teacher_dir(tmp_path))
    for terms in (dict(perceptual=1.0), dict(class_kl=1.0)):
        with pytest.raises(ValueError, match=r"classifier .*rgb-cnn.* 3-channel images.* 1-channel"):
            distill(teacher=teacher, out=str(tmp_path / "runs" / "d"), classifier=str(rgb), steps=2, **terms, **FAST)
        assert not (tmp_path / "runs").exists()
    code, err = cli(["distill", "--teacher", teacher, "--classifier", rgb, "--perceptual", "1", "--steps", "2",
                     "--data", "synthetic", "--batch-size", "4", "--out", tmp_path / "runs" / "d"], capsys)
    assert code not in (0, None) and "3-channel images" in one_line(err)
    assert not (tmp_path / "runs").exists()
