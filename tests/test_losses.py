import math

import pytest
import torch
from torch import nn

from gandistill.losses import (
    ADVERSARIAL,
    LOSSES,
    class_kl_loss,
    disc_feature_loss,
    disc_kl_loss,
    feature_loss,
    make_adapters,
    perceptual_loss,
    pixel_loss,
    r1_penalty,
)
from gandistill.students import make_student

from .conftest import tiny_discriminator, tiny_generator


def test_registries():
    assert LOSSES.names() == ["adversarial", "class_kl", "disc_feature", "disc_kl", "feature", "perceptual", "pixel"]
    assert ADVERSARIAL.names() == ["hinge", "lsgan", "nonsat"]


@pytest.mark.parametrize("kind", ["l1", "mse", "l1+mse"])
def test_pixel(kind):
    a, b = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    expected = {"l1": 0.5, "mse": 0.25, "l1+mse": 0.75}[kind]
    assert pixel_loss(a, b, kind).item() == pytest.approx(expected)
    assert pixel_loss(a, a, kind).item() == 0
    with pytest.raises(ValueError, match="pixel loss kind"):
        pixel_loss(a, b, "l3")


def test_disc_kl_matches_hand_computation():
    t, s, T = torch.tensor([2.0, -1.0]), torch.tensor([0.0, 0.5]), 2.0

    def kl(dt, ds):
        pt, ps = 1 / (1 + math.exp(-dt / T)), 1 / (1 + math.exp(-ds / T))
        return pt * math.log(pt / ps) + (1 - pt) * math.log((1 - pt) / (1 - ps))

    expected = (kl(2.0, 0.0) + kl(-1.0, 0.5)) / 2 * T**2
    assert disc_kl_loss(s, t, T).item() == pytest.approx(expected, rel=1e-6)
    assert disc_kl_loss(t, t, T).item() == pytest.approx(0, abs=1e-7)
    assert disc_kl_loss(torch.tensor([30.0]), torch.tensor([-30.0])).isfinite()  # stable at large logits


def test_class_kl_matches_hand_computation():
    t = torch.tensor([[2.0, 0.0, -1.0]])
    s = torch.tensor([[0.5, 0.5, 0.0]])
    alpha, T = 0.3, 2.0
    p_t = torch.softmax(t / T, 1)
    log_p_s = torch.log_softmax(s / T, 1)
    kl = (p_t * (p_t.log() - log_p_s)).sum().item()
    ce = -torch.log_softmax(s, 1)[0, 0].item()  # teacher's argmax class is 0
    assert class_kl_loss(s, t, alpha, T).item() == pytest.approx(alpha * ce + (1 - alpha) * kl * T**2, rel=1e-6)
    assert class_kl_loss(t, t, 0.0, T).item() == pytest.approx(0, abs=1e-6)


def test_feature_and_discriminator_terms_vanish_for_identical_inputs():
    feats = {"a": torch.randn(2, 4, 8, 8), "b": torch.randn(2, 3, 4, 4)}
    adapters = make_adapters(feats, feats)
    for conv in adapters.values():  # identity adapters
        nn.init.dirac_(conv.weight)
    assert feature_loss(feats, feats, adapters).item() == pytest.approx(0, abs=1e-12)
    assert disc_feature_loss(feats, feats).item() == 0
    assert perceptual_loss(feats, feats).item() == 0
    shifted = {k: v + 1 for k, v in feats.items()}
    assert disc_feature_loss(shifted, feats).item() == pytest.approx(1.0)
    assert disc_feature_loss(shifted, feats, {"a": 1.0, "b": 0.0}).item() == pytest.approx(1.0)


def test_relative_feature_loss_ignores_each_taps_scale():
    torch.manual_seed(0)
    t = {"a": torch.randn(4, 3, 5, 5), "b": torch.randn(4, 6, 3, 3)}
    s = {"a": torch.randn(4, 3, 5, 5), "b": torch.randn(4, 6, 3, 3)}
    adapters = make_adapters(s, t)
    scaled_t = {"a": t["a"] * 100, "b": t["b"]}
    scaled_s = {"a": s["a"] * 100, "b": s["b"]}
    relative = feature_loss(s, t, adapters, "relative")
    assert feature_loss(scaled_s, scaled_t, adapters, "relative").item() == pytest.approx(relative.item(), rel=1e-4)
    assert feature_loss(scaled_s, scaled_t, adapters).item() > 100 * feature_loss(s, t, adapters).item()
    with pytest.raises(ValueError, match="mse or relative"):
        feature_loss(s, t, adapters, "l1")


def test_adapters_map_student_channels_to_teacher_channels():
    s = {"b4": torch.randn(2, 3, 4, 4)}
    t = {"b4": torch.randn(2, 12, 4, 4)}
    adapters = make_adapters(s, t)
    assert adapters["b4"](s["b4"]).shape == t["b4"].shape


@pytest.mark.parametrize("kind", ["hinge", "nonsat", "lsgan"])
def test_adversarial_losses_prefer_the_right_sign(kind):
    loss = ADVERSARIAL.get(kind)
    good_d = loss(torch.full((4,), -3.0), torch.full((4,), 3.0))
    bad_d = loss(torch.full((4,), 3.0), torch.full((4,), -3.0))
    assert good_d < bad_d
    assert loss(torch.full((4,), 3.0)) < loss(torch.full((4,), -3.0))  # G wants D to say "real"


def test_gradients_reach_the_student_only():
    teacher = tiny_generator("dcgan").eval().requires_grad_(False)
    student = make_student(teacher, 0.5).train()
    d = tiny_discriminator("dcgan").eval().requires_grad_(False)
    z = torch.randn(4, teacher.z_dim)
    with torch.no_grad():
        t_img, t_feats = teacher.forward_features(z)
        t_logits, t_dfeats = d.forward_features(t_img)
    s_img, s_feats = student.forward_features(z)
    s_logits, s_dfeats = d.forward_features(s_img)
    adapters = make_adapters(s_feats, t_feats)
    terms = [pixel_loss(s_img, t_img), feature_loss(s_feats, t_feats, adapters),
             disc_feature_loss(s_dfeats, t_dfeats), disc_kl_loss(s_logits, t_logits)]
    for term in terms:
        assert term.ndim == 0
        student.zero_grad()
        term.backward(retain_graph=True)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in d.parameters())


def test_r1_penalty_of_a_linear_discriminator():
    w = torch.tensor([3.0, 4.0])
    x = torch.randn(5, 1, 1, 2, requires_grad=True)
    logits = (x.reshape(5, 2) * w).sum(1)
    assert r1_penalty(logits, x).item() == pytest.approx(25.0)  # |grad|^2 = 3^2 + 4^2
