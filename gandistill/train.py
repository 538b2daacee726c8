"""train() and distill(): each one top-down function with its phases marked; their plumbing is engine.py.

Both write a run directory: the user-facing weights (safetensors + config.json), ``state.pt`` (everything
needed to resume: models, EMA, adapters, optimizers, step, every RNG state, the config), ``log.jsonl``
and ``samples/``. State is written atomically every ``checkpoint_every`` steps, on SIGINT/SIGTERM and at
the end; a run stopped and resumed ends with the same weights as an uninterrupted one on CPU.
"""
from __future__ import annotations

import copy
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .budget import MacsModel, parse_macs, pick_widths
from .checkpoint import (
    discriminator_dir,
    from_pretrained,
    load_gan,
    load_state,
    read_config,
    resolve_model_dir,
    save_gan,
    save_pretrained,
    save_state,
    weights_sha256,
)
from .config import DistillConfig, TrainConfig, width_tag
from .data import BatchSampler, load_dataset
from .engine import (
    _all_finite,
    _autocast,
    _broadcast_start,
    _check_out,
    _check_resumable,
    _ema_update,
    _holding_run_lock,
    _Log,
    _recover,
    _resolve_config,
    _rng_state,
    _set_lrs,
    _set_rng_state,
    _setup_distributed,
    _step_ok,
    _StopRequest,
    _sync_buffers,
    _sync_grads,
    lr_at,
)
from .losses import (
    ADVERSARIAL,
    adversarial_loss,
    class_kl_loss,
    disc_feature_loss,
    disc_kl_loss,
    feature_loss,
    make_adapters,
    perceptual_loss,
    pixel_loss,
    r1_penalty,
)
from .models import block_channels, build_discriminator, build_generator
from .samples import save_grid, side_by_side
from .students import kept_channels_by_tap, make_student, student_channels

NUM_FIXED = 32  # latents of the periodic sample grids


@dataclass
class RunResult:
    """What train() and distill() return."""

    out: Path
    generator: nn.Module  # the saved generator (EMA when enabled): the teacher for train(), the student for distill()
    discriminator: nn.Module | None
    step: int
    status: str  # "completed" | "interrupted"
    bad_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def student(self) -> nn.Module:
        return self.generator


# --- train(): a GAN from scratch -----------------------------------------------------------------------

@_holding_run_lock
def train(config: TrainConfig | dict | None = None, **overrides) -> RunResult:
    """Train a GAN from scratch; writes ``generator/`` (EMA), ``discriminator/``, state, log and samples."""
    cfg = _resolve_config(TrainConfig, config, overrides)

    # --- set up: devices, ranks, seeds, output ---
    rank, world, device = _setup_distributed(cfg.device)
    out = Path(cfg.out)
    state_path = _check_out(out, cfg, rank)
    torch.manual_seed(cfg.seed * 1000 + rank)
    np.random.seed(cfg.seed * 1000 + rank)
    random.seed(cfg.seed * 1000 + rank)

    # --- data ---
    data = load_dataset(cfg.data, cfg.split, cfg.data_root, cfg.resolution, cfg.channels)
    if cfg.holdout:
        if cfg.holdout >= len(data):
            raise ValueError(f"holdout ({cfg.holdout}) must be smaller than the dataset ({len(data)} images)")
        data = data.subset(0, len(data) - cfg.holdout)
    sampler = BatchSampler(len(data), cfg.batch_size, cfg.seed, rank, world)

    # --- models, EMA, optimizers ---
    G = build_generator(cfg.family, cfg.model_config()).to(device).train()
    D = build_discriminator(cfg.family, cfg.model_config(discriminator=True)).to(device).train()
    if cfg.init_from and not cfg.resume:
        _init_from(G, D, cfg)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema else None
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.g_lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=(cfg.beta1, cfg.beta2))
    adv = ADVERSARIAL.get(cfg.loss)
    z_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 17 + rank)
    fixed_z = torch.randn(NUM_FIXED, G.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    step, bad_total, lr_factor = 0, 0, 1.0
    segments: list[dict] = []  # one per start of this run, resumes included: what each part ran with

    def capture() -> dict:
        return {"kind": "train", "config": cfg.to_dict(), "step": step, "bad_steps": bad_total,
                "lr_factor": lr_factor, "segments": segments,
                "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict() if G_ema else None,
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "sampler": sampler.state_dict(),
                "rng": _rng_state(device, z=z_gen)}

    def restore(state: dict) -> int:
        nonlocal step, bad_total, lr_factor
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        if G_ema is not None and state["G_ema"] is not None:
            G_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"], device, z=z_gen)
        step, bad_total, lr_factor = int(state["step"]), int(state["bad_steps"]), float(state["lr_factor"])
        return step

    def final_g() -> nn.Module:
        return G_ema if G_ema is not None else G

    def checkpoint() -> None:
        _sync_buffers(G, world)
        if rank == 0 and _all_finite(G, D, G_ema):
            save_state(capture(), state_path)

    # --- resume ---
    if cfg.resume:
        state = load_state(state_path, map_location=str(device))
        _check_resumable(state, cfg, "train")
        restore(state)
        segments[:0] = state.get("segments", [])
        segments.append({"from_step": step, "config": cfg.to_json_dict()})
        # the optimizers' saved learning rates are not the run's settings: train at the configured ones
        _set_lrs({opt_g: cfg.g_lr, opt_d: cfg.d_lr}, lr_factor)
    else:
        _broadcast_start([G, D, G_ema], world)
        segments.append({"from_step": 0, "config": cfg.to_json_dict()})
        checkpoint()  # step 0: the "last good state" that non-finite recovery falls back to
    log = _Log(out / "log.jsonl", rank == 0, step if cfg.resume else None)

    # --- loop ---
    bad_run = 0
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=rank != 0, dynamic_ncols=True,
               mininterval=1.0, file=sys.stderr)
    with _StopRequest() as stop:
        while step < cfg.steps and not stop.stopping:
            real = data.batch(sampler.next(), device)  # [B, C, R, R]
            z = torch.randn(cfg.batch_size, G.z_dim, device=device, generator=z_gen)

            # discriminator step: real vs G(z).detach(), lazy R1 every r1_every steps
            with _autocast(device, cfg.amp):
                fake = G(z)
                d_loss = adv(D(fake.detach()), D(real))
                terms = {"d_loss": d_loss}
                if cfg.r1_gamma > 0 and step % cfg.r1_every == 0:
                    real_r1 = real.detach().requires_grad_(True)
                    r1 = r1_penalty(D(real_r1).float(), real_r1)
                    d_loss = d_loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
                    terms["r1"] = r1
            # generator step against the discriminator as it was before its update (one G forward per step)
            D.requires_grad_(False)
            with _autocast(device, cfg.amp):
                g_loss = adv(D(fake))
            D.requires_grad_(True)
            terms["g_loss"] = g_loss

            if _step_ok(d_loss + g_loss, stop):
                opt_d.zero_grad(set_to_none=True)
                opt_g.zero_grad(set_to_none=True)
                d_loss.backward()
                g_loss.backward()
                _sync_grads([D, G], world)
                opt_d.step()
                opt_g.step()
                bad_run = 0
                step += 1
                if G_ema is not None:
                    _ema_update(G_ema, G, cfg.ema_decay, step)
                log.add(terms)
            else:
                bad_run, bad_total = bad_run + 1, bad_total + 1
                if bad_run >= cfg.max_bad_steps:
                    bad_kept, halved = bad_total, lr_factor * 0.5
                    _recover(restore, state_path, device, {opt_g: cfg.g_lr, opt_d: cfg.d_lr}, halved, bar, rank)
                    bad_total, bad_run, lr_factor = bad_kept, 0, halved
                continue
            bar.update(1)

            # --- bookkeeping: log, samples, snapshots, state ---
            if step % cfg.log_every == 0 or step == cfg.steps:
                record = log.write(step, log.count * cfg.batch_size * world, bad_steps=bad_total)
                bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("d_loss", "g_loss")}
                                | {"img/s": f"{record['img_per_s']:.0f}"})
            if rank == 0 and cfg.sample_every and step % cfg.sample_every == 0:
                with torch.no_grad():
                    save_grid(final_g().eval()(fixed_z), out / "samples" / f"step{step:07d}.png", nrow=8)
                G.train()
            if rank == 0 and cfg.snapshot_every and step % cfg.snapshot_every == 0:
                save_pretrained(final_g(), out / "snapshots" / f"step{step:07d}")
            if step % cfg.checkpoint_every == 0:
                checkpoint()
    bar.close()

    # --- finish: state, weights for people ---
    checkpoint()
    status = "completed" if step >= cfg.steps else "interrupted"
    final = final_g()
    if rank == 0 and status == "completed":
        save_gan(final, D, out)
    return RunResult(out, final.eval(), D, step, status, bad_total)


def _init_from(G: nn.Module, D: nn.Module, cfg: TrainConfig) -> None:
    """Load a GAN directory's weights into the freshly built G and D; their configs must be this run's."""
    generator, discriminator = load_gan(cfg.init_from)
    if discriminator is None:
        raise ValueError(f"--init-from {cfg.init_from}: no discriminator/ beside the generator; a GAN directory "
                         f"(generator/ and discriminator/) is needed to train on")
    for name, model, loaded in (("generator", G, generator), ("discriminator", D, discriminator)):
        if loaded.family != cfg.family or loaded.config != model.config:
            raise ValueError(f"--init-from {cfg.init_from}: its {name} is {loaded.family} {loaded.config}, this run "
                             f"builds {cfg.family} {model.config}; pass the same family and sizes")
        model.load_state_dict(loaded.state_dict())


# --- distill(): teacher -> student -----------------------------------------------------------------------

def _load_classifier(cfg: DistillConfig, device: torch.device) -> nn.Module | None:
    """The frozen classifier of the perceptual / class_kl terms, None when both are off; refused in one line when
    it cannot take the teacher's images (it would fail at step 1, after the run folder and state.pt exist)."""
    if not (cfg.perceptual > 0 or cfg.class_kl > 0):
        return None
    classifier = from_pretrained(cfg.classifier, kind="classifier", map_location=str(device))
    classifier.eval().requires_grad_(False)
    tc, cc = read_config(resolve_model_dir(cfg.teacher))["config_obj"], classifier.config
    if cc.channels != tc.channels:
        raise ValueError(f"--classifier {cfg.classifier} takes {cc.channels}-channel images, the teacher {cfg.teacher} "
                         f"draws {tc.channels}-channel ones; choose a classifier trained on images like the teacher's")
    # other sizes are resized to the classifier's own; a classifier that cannot take them fails on this probe
    try:
        with torch.no_grad():
            classifier.forward_features(torch.zeros(1, tc.channels, tc.resolution, tc.resolution, device=device))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"--classifier {cfg.classifier} cannot take the teacher's {tc.resolution} px images "
                         f"({reason}); choose a classifier trained on images like the teacher's") from None
    return classifier


def _student_channels(cfg: DistillConfig, rank: int) -> tuple[int, ...] | None:
    """The student's per-block channel counts when ``widths`` or ``macs`` is given (None for one width), from the
    teacher's config.json alone: checked, and a budget resolved, before anything is written."""
    if not cfg.widths and cfg.macs is None:
        return None
    meta = read_config(resolve_model_dir(cfg.teacher, "generator"))
    teacher = SimpleNamespace(family=meta["family"], config=meta["config_obj"])
    if cfg.widths:
        return student_channels(teacher, cfg.widths)
    costs = MacsModel(teacher)
    teacher_macs = round(costs(costs.full))
    counts = pick_widths(teacher, parse_macs(cfg.macs, teacher_macs), cfg.balance, costs)
    if rank == 0:
        names = block_channels(teacher.family, teacher.config)
        macs = round(costs(counts))
        picked = ", ".join(f"{b} {c}/{full}" for (b, full), c in zip(names.items(), counts, strict=True))
        print(f"macs {cfg.macs} (balance {cfg.balance:g}): widths {picked} -> {macs:,} MACs per image, "
              f"{teacher_macs / macs:.1f}x fewer than the teacher's {teacher_macs:,}", file=sys.stderr)
    return counts


@_holding_run_lock
def distill(config: DistillConfig | dict | None = None, **overrides) -> RunResult:
    """Distill a ``width``-times narrower student from a frozen teacher; writes ``student/`` (EMA when enabled).

    Teacher and student see the same z every step. Loss terms (weight 0 turns one off): pixel, feature
    (student taps -> 1x1 adapters -> teacher taps), disc_feature and disc_kl (on the teacher's frozen
    discriminator), perceptual and class_kl (on a classifier), adversarial (a discriminator that starts
    from the teacher's and keeps training; real images are data, or teacher images when ``data="none"``).
    """
    cfg = _resolve_config(DistillConfig, config, overrides)

    # --- set up: devices, ranks, seeds, output ---
    rank, world, device = _setup_distributed(cfg.device)
    if Path(cfg.teacher).is_dir() and discriminator_dir(cfg.teacher) is None and (cfg.disc_feature or cfg.disc_kl):
        # most published checkpoints hold the generator only: run without the terms that need its discriminator
        # (the config saved with the state and the student records them as 0) rather than stop; decided before
        # the output folder is made, so that a run that cannot start leaves nothing behind
        if not any((cfg.pixel, cfg.feature, cfg.perceptual, cfg.class_kl, cfg.adversarial)):
            raise ValueError(f"{cfg.teacher} has no discriminator/, so disc_feature and disc_kl cannot be used, "
                             f"and every other loss weight is 0: give pixel, feature or adversarial a weight")
        if rank == 0:
            print(f"note: {cfg.teacher} has no discriminator/: disc_feature and disc_kl are off"
                  + ("; the adversarial term trains a fresh discriminator" if cfg.adversarial > 0 else ""),
                  file=sys.stderr)
        cfg = cfg.replace(disc_feature=0.0, disc_kl=0.0)
    classifier = _load_classifier(cfg, device)  # before the output folder: one that cannot fit leaves nothing
    layer_channels = _student_channels(cfg, rank)  # per-block counts (widths or a macs budget), or None
    out = Path(cfg.out)
    state_path = _check_out(out, cfg, rank)
    torch.manual_seed(cfg.seed * 1000 + rank)
    np.random.seed(cfg.seed * 1000 + rank)
    random.seed(cfg.seed * 1000 + rank)

    # --- load the teacher (frozen: eval mode, no grad) and its discriminator ---
    teacher, teacher_d = load_gan(cfg.teacher, map_location=str(device))
    teacher.eval().requires_grad_(False)
    if hasattr(teacher, "set_noise_mode"):
        teacher.set_noise_mode("const")  # same z -> same image, for teacher and student alike

    # --- the student, initialised from the teacher's most important channels ---
    student = make_student(teacher, None if layer_channels else cfg.width, cfg.init, seed=cfg.seed,
                           widths=layer_channels).to(device).train()
    if cfg.macs is not None:
        student.lineage.update(macs_budget=cfg.macs, balance=cfg.balance)
    # which teacher weights, not just which path: a student stays traceable after its teacher is retrained
    teacher_sha256 = weights_sha256(cfg.teacher)
    student.lineage["teacher"]["weights_sha256"] = teacher_sha256
    if hasattr(student, "set_noise_mode"):
        student.set_noise_mode("const")
    student_ema = copy.deepcopy(student).eval().requires_grad_(False) if cfg.ema else None

    # --- discriminators: a frozen one for disc_feature / disc_kl, a trained one for the adversarial term ---
    need_d_kd = cfg.disc_feature > 0 or cfg.disc_kl > 0
    D_kd = teacher_d.eval().requires_grad_(False) if teacher_d is not None else None
    D = None
    if cfg.adversarial > 0:
        D = (copy.deepcopy(teacher_d) if teacher_d is not None
             else build_discriminator(teacher.family, teacher.config)).to(device).train().requires_grad_(True)

    # --- adapters: one 1x1 conv per generator tap, student channels -> teacher channels ---
    # shapes are probed in eval mode: a train-mode pass would move the student's batch-norm statistics
    with torch.no_grad():
        probe = torch.zeros(2, teacher.z_dim, device=device)
        _, t_probe = teacher.forward_features(probe)
        _, s_probe = student.eval().forward_features(probe)
        student.train()
    adapters = (make_adapters(s_probe, t_probe, list(teacher.distill_taps), kept_channels_by_tap(student)).to(device)
                if cfg.feature > 0 else nn.ModuleDict())

    # --- optional classifier for perceptual / class_kl (loaded and checked before the output folder) ---
    if classifier is not None:
        # the student's lineage names the network whose features trained it: an evaluation through that same
        # network is then no independent judge, and evaluate() says so beside the scores
        trained_on = {"kind": "classifier", "weights_sha256": weights_sha256(cfg.classifier, kind="classifier"),
                      "terms": [t for t in ("perceptual", "class_kl") if getattr(cfg, t) > 0]}
        for model in (student, student_ema):
            if model is not None:
                model.lineage["loss_networks"] = [trained_on]

    # --- data: real images for the discriminator (none: data-free, teacher images count as real) ---
    data = sampler = None
    if D is not None and cfg.data != "none":
        tc = teacher.config
        data = load_dataset(cfg.data, cfg.split, cfg.data_root, tc.resolution, tc.channels)
        sampler = BatchSampler(len(data), cfg.batch_size, cfg.seed, rank, world)

    # --- optimizers ---
    opt_g = torch.optim.Adam(list(student.parameters()) + list(adapters.parameters()), lr=cfg.g_lr,
                             betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=(cfg.beta1, cfg.beta2)) if D is not None else None
    optimizers = {opt_g: cfg.g_lr, **({opt_d: cfg.d_lr} if opt_d is not None else {})}
    adv = ADVERSARIAL.get(cfg.adv_loss)
    if cfg.channels_last:
        for m in (teacher, student, D, D_kd, student_ema):
            if m is not None:
                m.to(memory_format=torch.channels_last)
    nd = min(cfg.disc_batch or cfg.batch_size, cfg.batch_size)  # the images of a step the discriminators see
    z_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 17 + rank)
    fixed_z = torch.randn(NUM_FIXED, teacher.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    with torch.no_grad():
        fixed_teacher = teacher(fixed_z)
    step, bad_total, lr_factor = 0, 0, 1.0
    segments: list[dict] = []  # one per start of this run, resumes included: what each part ran with

    def capture() -> dict:
        return {"kind": "distill", "config": cfg.to_dict(), "teacher_sha256": teacher_sha256, "step": step,
                "bad_steps": bad_total, "lr_factor": lr_factor, "segments": segments,
                "student": student.state_dict(),
                "student_ema": student_ema.state_dict() if student_ema is not None else None,
                "adapters": adapters.state_dict(), "D": D.state_dict() if D is not None else None,
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict() if opt_d is not None else None,
                "sampler": sampler.state_dict() if sampler is not None else None,
                "rng": _rng_state(device, z=z_gen)}

    def restore(state: dict) -> int:
        nonlocal step, bad_total, lr_factor
        student.load_state_dict(state["student"])
        if student_ema is not None and state["student_ema"] is not None:
            student_ema.load_state_dict(state["student_ema"])
        adapters.load_state_dict(state["adapters"])
        if D is not None:
            D.load_state_dict(state["D"])
            opt_d.load_state_dict(state["opt_d"])
        opt_g.load_state_dict(state["opt_g"])
        if sampler is not None:
            sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"], device, z=z_gen)
        step, bad_total, lr_factor = int(state["step"]), int(state["bad_steps"]), float(state["lr_factor"])
        return step

    def final_student() -> nn.Module:
        return student_ema if student_ema is not None else student

    def checkpoint() -> None:
        _sync_buffers(student, world)
        if rank == 0 and _all_finite(student, student_ema, adapters, D):
            save_state(capture(), state_path)

    # --- resume ---
    if cfg.resume:
        state = load_state(state_path, map_location=str(device))
        _check_resumable(state, cfg, "distill")
        if state.get("teacher_sha256", teacher_sha256) != teacher_sha256:  # states before this field: no check
            raise ValueError(f"cannot resume: {cfg.teacher}'s generator weights changed since this run started "
                             f"(sha256 {state['teacher_sha256'][:12]}... then, {teacher_sha256[:12]}... now); "
                             f"start a new run")
        restore(state)
        segments[:0] = state.get("segments", [])
        segments.append({"from_step": step, "config": cfg.to_json_dict()})
    else:
        _broadcast_start([student, student_ema, adapters, D], world)
        segments.append({"from_step": 0, "config": cfg.to_json_dict()})
        checkpoint()
    log = _Log(out / "log.jsonl", rank == 0, step if cfg.resume else None)
    if rank == 0:
        save_grid(fixed_teacher, out / "samples" / "teacher.png", nrow=8)

    # --- loop ---
    bad_run = 0
    bar = tqdm(total=cfg.steps, initial=step, desc=f"distill {width_tag(student.config)}", disable=rank != 0,
               dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    with _StopRequest() as stop:
        while step < cfg.steps and not stop.stopping:
            z = torch.randn(cfg.batch_size, teacher.z_dim, device=device, generator=z_gen)

            # teacher: images and taps for the same z, no graph
            with torch.no_grad(), _autocast(device, cfg.amp):
                t_img, t_feats = teacher.forward_features(z)
                t_dlogits, t_dfeats = D_kd.forward_features(t_img[:nd]) if need_d_kd else (None, None)
                t_cls, t_cfeats = classifier.forward_features(t_img) if classifier is not None else (None, None)

            # student: every enabled term against the teacher's
            with _autocast(device, cfg.amp):
                s_img, s_feats = student.forward_features(z)
                terms: dict[str, torch.Tensor] = {}
                if cfg.pixel > 0:
                    terms["pixel"] = pixel_loss(s_img, t_img, cfg.pixel_kind)
                if cfg.feature > 0:
                    terms["feature"] = feature_loss(s_feats, t_feats, adapters, cfg.feature_kind)
                if need_d_kd:
                    s_dlogits, s_dfeats = D_kd.forward_features(s_img[:nd])
                    if cfg.disc_feature > 0:
                        terms["disc_feature"] = disc_feature_loss(s_dfeats, t_dfeats)
                    if cfg.disc_kl > 0:
                        terms["disc_kl"] = disc_kl_loss(s_dlogits.float(), t_dlogits.float(), cfg.kl_temperature)
                if classifier is not None:
                    s_cls, s_cfeats = classifier.forward_features(s_img)
                    if cfg.perceptual > 0:
                        terms["perceptual"] = perceptual_loss(s_cfeats, t_cfeats)
                    if cfg.class_kl > 0:
                        terms["class_kl"] = class_kl_loss(s_cls.float(), t_cls.float(), cfg.class_alpha,
                                                          cfg.class_temperature)
                if D is not None:
                    D.requires_grad_(False)
                    terms["adversarial"] = adversarial_loss(D(s_img[:nd]), cfg.adv_loss)
                    D.requires_grad_(True)
                weights = {"pixel": cfg.pixel, "feature": cfg.feature, "disc_feature": cfg.disc_feature,
                           "disc_kl": cfg.disc_kl, "perceptual": cfg.perceptual, "class_kl": cfg.class_kl,
                           "adversarial": cfg.adversarial}
                total = sum(weights[k] * v.float() for k, v in terms.items())
                terms["total"] = total

            # discriminator: real (data, or teacher images when data-free) vs the student's images
            if D is not None:
                with _autocast(device, cfg.amp):
                    real = data.batch(sampler.next()[:nd], device) if data is not None else t_img[:nd]
                    d_loss = adv(D(s_img[:nd].detach()), D(real))
                terms["d_loss"] = d_loss
                total_check = total + d_loss
            else:
                total_check = total

            if _step_ok(total_check, stop):
                # every step, constant included: a resumed optimizer holds the rate it was saved with
                _set_lrs(optimizers, lr_factor * lr_at(cfg.lr_schedule, step, cfg.steps))
                opt_g.zero_grad(set_to_none=True)
                total.backward()
                _sync_grads([student, adapters], world)
                opt_g.step()
                if D is not None:
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()
                    _sync_grads([D], world)
                    opt_d.step()
                bad_run = 0
                step += 1
                if student_ema is not None:
                    _ema_update(student_ema, student, cfg.ema_decay, step)
                log.add(terms)
            else:
                bad_run, bad_total = bad_run + 1, bad_total + 1
                if bad_run >= cfg.max_bad_steps:
                    bad_kept, halved = bad_total, lr_factor * 0.5
                    _recover(restore, state_path, device, optimizers, halved, bar, rank)
                    bad_total, bad_run, lr_factor = bad_kept, 0, halved
                continue
            bar.update(1)

            # --- bookkeeping: log, samples, state ---
            if step % cfg.log_every == 0 or step == cfg.steps:
                record = log.write(step, log.count * cfg.batch_size * world, bad_steps=bad_total)
                bar.set_postfix({k: f"{record[k]:.3f}" for k in ("total", "pixel", "adversarial") if k in record}
                                | {"img/s": f"{record['img_per_s']:.0f}"})
            if rank == 0 and cfg.sample_every and step % cfg.sample_every == 0:
                with torch.no_grad():
                    s_fixed = final_student().eval()(fixed_z)
                student.train()
                save_grid(side_by_side(fixed_teacher, s_fixed, nrow=8), out / "samples" / f"step{step:07d}.png",
                          nrow=8)
            if step % cfg.checkpoint_every == 0:
                checkpoint()
    bar.close()

    # --- finish: state, the student for people ---
    checkpoint()
    status = "completed" if step >= cfg.steps else "interrupted"
    final = final_student().eval()
    if rank == 0 and status == "completed":
        save_pretrained(final, out / "student", extra={"distill": cfg.to_dict(), "segments": segments})
        if D is not None:
            save_pretrained(D, out / "discriminator")
    return RunResult(out, final, D, step, status, bad_total)
