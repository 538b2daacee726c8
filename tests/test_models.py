"""The shared suite every model family passes (tiny configs, CPU)."""
import dataclasses

import pytest
import torch

from gandistill.checkpoint import from_pretrained, save_pretrained
from gandistill.config import DCGANConfig, StyleGAN2Config, StyleGAN2LiteConfig
from gandistill.models import GENERATORS, build_discriminator, build_generator
from gandistill.students import make_student

from .conftest import FAMILIES, TINY, tiny_discriminator, tiny_generator


def test_registry_lists_both_families():
    assert GENERATORS.names() == ["dcgan", "stylegan2", "stylegan2-lite"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
def test_generator_shape_range_and_taps(family, resolution, channels):
    g = tiny_generator(family, resolution=resolution, channels=channels).eval()
    z = torch.randn(3, g.z_dim)
    img, feats = g.forward_features(z)
    assert img.shape == (3, channels, resolution, resolution)
    if family == "stylegan2":  # as published: the raw sum of the ToRGB outputs, images clamp it on display
        assert torch.isfinite(img).all()
    else:  # tanh
        assert img.min() >= -1 and img.max() <= 1
    assert tuple(feats) == g.taps
    # at least one tap per resolution from 4 up to the output
    sizes = {f.shape[-1] for f in feats.values()}
    assert {4 * 2**i for i in range(resolution.bit_length() - 3)} <= sizes
    assert torch.equal(g(z), img)


@pytest.mark.parametrize("family", FAMILIES)
def test_discriminator_logits_and_taps(family):
    d = tiny_discriminator(family, resolution=32)
    logits, feats = d.forward_features(torch.randn(6, 1, 32, 32))
    assert logits.shape == (6,)
    assert tuple(feats) == d.taps and len(feats) >= 3


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_model_same_images(family):
    z = torch.randn(4, TINY[family].get("z_dim", 100))
    torch.manual_seed(1)
    a = tiny_generator(family).eval()(z)
    torch.manual_seed(1)
    b = tiny_generator(family).eval()(z)
    torch.manual_seed(2)
    c = tiny_generator(family).eval()(z)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip_is_bit_exact(family, tmp_path):
    for model in (tiny_generator(family), tiny_discriminator(family)):
        # make the state non-trivial (BN statistics, spectral-norm vectors move in training mode)
        model.train()
        model(torch.randn(4, model.z_dim)) if hasattr(model, "z_dim") else model(torch.randn(4, 1, 32, 32))
        save_pretrained(model, tmp_path / family)
        loaded = from_pretrained(tmp_path / family, kind=None)
        assert type(loaded) is type(model) and loaded.config == model.config
        a, b = model.state_dict(), loaded.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("init", ["l1", "prefix"])
def test_width_one_student_equals_teacher(family, init):
    teacher = tiny_generator(family).eval()
    student = make_student(teacher, 1.0, init=init).eval()
    z = torch.randn(5, teacher.z_dim)
    assert torch.equal(student(z), teacher(z))


@pytest.mark.parametrize("family", FAMILIES)
def test_inherited_student_is_closer_than_random(family):
    teacher = tiny_generator(family, base_channels=16).eval()
    z = torch.randn(64, teacher.z_dim)
    t_img = teacher(z)
    errors = {}
    for init in ("l1", "prefix", "random"):
        torch.manual_seed(0)
        student = make_student(teacher, 0.5, init=init).eval()
        errors[init] = (student(z) - t_img).square().mean().item()
    assert errors["l1"] < errors["random"]
    assert errors["prefix"] < errors["random"]


def test_singular_value_scaling_evens_out_the_spectrum_and_keeps_the_norm():
    from gandistill.students import singular_value_scaling

    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3) * torch.logspace(0, 2, 8)[:, None, None, None]  # a few dominant directions
    before = torch.linalg.svdvals(w.flatten(1))
    scaled = singular_value_scaling(w)
    after = torch.linalg.svdvals(scaled.flatten(1))
    assert scaled.shape == w.shape and scaled.dtype == w.dtype
    torch.testing.assert_close(scaled.norm(), w.norm(), rtol=1e-5, atol=0)
    torch.testing.assert_close(after / after[0], (before / before[0]).sqrt(), rtol=1e-4, atol=1e-6)
    assert after[0] < before[0] and after[-1] > before[-1]
    # the singular vectors stay: the top one of each is the same up to sign
    u0, u1 = (torch.linalg.svd(m.flatten(1))[0][:, 0] for m in (w, scaled))
    assert abs(float(u0 @ u1)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_svs_student_keeps_the_l1_channels_with_rescaled_weights(family):
    teacher = tiny_generator(family, base_channels=16)
    l1, svs = make_student(teacher, 0.5, init="l1"), make_student(teacher, 0.5, init="svs")
    assert svs.lineage["kept_channels"] == l1.lineage["kept_channels"] and svs.lineage["init"] == "svs"
    changed = [k for k, v in svs.state_dict().items() if not torch.equal(v, l1.state_dict()[k])]
    assert changed and all(k.endswith("weight") and svs.state_dict()[k].ndim >= 2 for k in changed)


@pytest.mark.parametrize("family", FAMILIES)
def test_kept_channel_bookkeeping(family):
    teacher = tiny_generator(family, base_channels=16)
    student = make_student(teacher, 0.25, init="l1")
    kept = student.lineage["kept_channels"]
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for t_group, s_group in zip(teacher.channel_groups(), student.channel_groups(), strict=False):
        idx = kept[t_group.name]
        name, dim = t_group.score
        n_teacher = t_state[name].shape[dim]
        assert len(idx) == s_state[s_group.score[0]].shape[s_group.score[1]] == max(1, round(n_teacher * 0.25))
        assert idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < n_teacher
        # l1: the kept channels are exactly the top-k by the L1 norm of their filters
        norms = t_state[name].abs().transpose(0, dim).reshape(n_teacher, -1).sum(1)
        assert sorted(norms.argsort(descending=True)[:len(idx)].tolist()) == idx
    assert student.lineage["teacher"]["config"] == teacher.config.to_dict()
    assert student.config.width == pytest.approx(0.25)


@pytest.mark.parametrize("family", FAMILIES)
def test_student_lineage_survives_save_load(family, tmp_path):
    student = make_student(tiny_generator(family), 0.5)
    save_pretrained(student, tmp_path / "s")
    loaded = from_pretrained(tmp_path / "s")
    assert loaded.lineage == student.lineage
    z = torch.randn(2, student.z_dim)
    assert torch.equal(loaded(z), student.eval()(z))


@pytest.mark.parametrize("kwargs,field", [
    (dict(width=0.0), "width"), (dict(width=1.5), "width"), (dict(width=-0.1), "width"),
    (dict(resolution=48), "resolution"), (dict(channels=2), "channels"), (dict(base_channels=0), "channel"),
    (dict(z_dim=0), "z_dim"), (dict(width="half"), "width"), (dict(bogus=1), "bogus"),
])
@pytest.mark.parametrize("family", FAMILIES)
def test_invalid_config_names_the_field(family, kwargs, field):
    if family == "stylegan2" and "base_channels" in kwargs:
        kwargs = dict(channel_base=0)
    with pytest.raises(ValueError, match=field):
        build_generator(family, **kwargs)
    with pytest.raises(ValueError, match=field):
        build_discriminator(family, **kwargs)


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown generator family 'biggan'.*dcgan, stylegan2, stylegan2-lite"):
        build_generator("biggan")


def test_config_objects_are_frozen_and_round_trip():
    for cfg in (DCGANConfig(width=0.5), StyleGAN2Config(resolution=64), StyleGAN2LiteConfig(resolution=64),
                StyleGAN2Config(conv_clamp=256.0, mapping_lr_mul=0.5)):
        assert type(cfg).from_dict(cfg.to_dict()) == cfg
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.width = 0.3


@pytest.mark.parametrize("width", [0, 1.01, float("nan"), True])
def test_make_student_rejects_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        make_student(tiny_generator("dcgan"), width)


def test_make_student_rejects_bad_init_and_discriminator():
    with pytest.raises(ValueError, match="student init 'best'"):
        make_student(tiny_generator("dcgan"), 0.5, init="best")
    with pytest.raises(ValueError, match="generator"):
        make_student(tiny_discriminator("dcgan"), 0.5)


def test_stylegan2_lite_noise_modes():
    g = tiny_generator("stylegan2-lite")
    with torch.no_grad():
        g.conv1["4"].noise.strength.fill_(1.0)
    z = torch.randn(2, g.z_dim)
    g.eval()
    assert torch.equal(g(z), g(z))  # eval: constant noise
    g.train()
    assert not torch.equal(g(z), g(z))  # training: fresh noise
    g.set_noise_mode("const")
    assert torch.equal(g(z), g(z))
    with pytest.raises(ValueError, match="noise mode"):
        g.set_noise_mode("loud")


@pytest.mark.parametrize("family", FAMILIES)
def test_distill_taps_are_hidden_features(family):
    g = tiny_generator(family)
    _, feats = g.forward_features(torch.randn(2, g.z_dim))
    assert set(g.distill_taps) <= set(g.taps) and g.distill_taps
    assert all(feats[t].shape[1] != g.config.channels or t.startswith("b") for t in g.distill_taps)
    assert not any(t.startswith("rgb") for t in g.distill_taps)


def test_image_layer_native_kernel_matches_onednn_and_restores_the_switch():
    from gandistill.models.layers import conv_transpose_native

    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(16, 1, 4, 2, 1)
    x = torch.randn(8, 16, 16, 16, requires_grad=True)
    assert torch.backends.mkldnn.enabled
    native = conv_transpose_native(conv, x)
    assert torch.backends.mkldnn.enabled  # the process-wide switch is back on
    reference = conv(x)
    torch.testing.assert_close(native, reference, rtol=1e-5, atol=1e-5)
    native.sum().backward()  # gradients flow through the native path
    assert x.grad is not None and conv.weight.grad is not None

    class Boom(torch.nn.Module):
        def forward(self, x):
            assert not torch.backends.mkldnn.enabled  # it ran with oneDNN off
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        conv_transpose_native(Boom(), x)
    assert torch.backends.mkldnn.enabled  # restored after an error too


def test_dcgan_generator_routes_its_image_layer_to_the_native_kernel(monkeypatch):
    from gandistill.models import dcgan

    g = tiny_generator("dcgan").eval()
    z = torch.randn(4, g.z_dim)
    seen = []
    real = dcgan.conv_transpose_native
    monkeypatch.setattr(dcgan, "conv_transpose_native", lambda conv, x: seen.append(conv) or real(conv, x))
    with torch.no_grad():
        out = g(z)
    assert seen == [g.to_img]
    monkeypatch.setattr(dcgan, "conv_transpose_native", lambda conv, x: conv(x))
    with torch.no_grad():
        torch.testing.assert_close(g(z), out, rtol=1e-5, atol=1e-5)


def _trained_bn_generator(**kwargs) -> torch.nn.Module:
    """A tiny DCGAN whose batch norms hold non-trivial running statistics and affine parameters."""
    g = tiny_generator("dcgan", **kwargs)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    g.train()
    for _ in range(3):  # running statistics move away from (0, 1)
        g(torch.randn(16, g.z_dim) * 2)
    return g.eval()


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
@pytest.mark.parametrize("width", [1.0, 0.25])
def test_dcgan_inference_form_draws_the_generators_images(resolution, channels, width):
    from gandistill.models import DCGANInference, for_inference

    teacher = _trained_bn_generator(resolution=resolution, channels=channels)
    g = teacher if width == 1.0 else make_student(teacher, width).eval()
    served = for_inference(g)
    assert isinstance(served, DCGANInference)
    assert served.config is g.config and served.z_dim == g.z_dim and served.lineage == g.lineage
    z = torch.randn(9, g.z_dim)
    with torch.no_grad():
        expected = g(z)
    with torch.inference_mode():
        got = served(z)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)  # folding only reorders float32 rounding
    assert got.abs().max() <= 1
    assert g.training is False and all(p.requires_grad for p in g.parameters())  # the generator is untouched
    assert not any(p.requires_grad for p in served.parameters())
    assert for_inference(served) is served


def test_dcgan_inference_form_copies_the_weights_and_keeps_dtype_and_device():
    from gandistill.models import for_inference

    g = _trained_bn_generator()
    served = for_inference(g)
    z = torch.randn(4, g.z_dim)
    before = served(z).detach()
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(0.5)
    assert torch.equal(served(z).detach(), before)  # built from the weights at that moment
    double = for_inference(g.double())
    assert all(p.dtype == torch.float64 for p in double.parameters())
    with torch.no_grad():
        torch.testing.assert_close(double(z.double()), g(z.double()), rtol=0, atol=1e-12)


def test_for_inference_serves_other_generators_as_they_are():
    from gandistill.models import DCGANGenerator, for_inference

    g = tiny_generator("stylegan2").eval()
    assert for_inference(g) is g

    class Custom(DCGANGenerator):  # a subclass may compute something else in forward()
        pass

    custom = Custom(tiny_generator("dcgan").config)
    assert for_inference(custom) is custom
    with pytest.raises(ValueError, match="needs a generator, got a discriminator"):
        for_inference(tiny_discriminator("dcgan"))


def test_stylegan2_noise_modes_and_truncation():
    g = tiny_generator("stylegan2").eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(1.0)
        g.mapping.w_avg.normal_()
    z = torch.randn(2, g.z_dim)
    assert torch.equal(g(z), g(z))  # const noise by default, in training mode too
    g.set_noise_mode("random")
    assert not torch.equal(g(z), g(z))
    g.set_noise_mode("none")
    no_noise = g(z)
    g.set_noise_mode("auto")  # "auto" is const
    assert g.noise_mode == "const" and not torch.equal(g(z), no_noise)
    with pytest.raises(ValueError, match="noise mode"):
        g.set_noise_mode("loud")
    # psi 0 draws w_avg for every z: one image; a cutoff keeps the later styles
    g.set_truncation(0.0)
    img = g(z)
    torch.testing.assert_close(img[0], img[1])
    g.set_truncation(0.0, cutoff=2)
    assert not torch.allclose(g(z)[0], g(z)[1])
    with pytest.raises(ValueError, match="cutoff"):
        g.set_truncation(0.5, cutoff=g.num_ws + 1)


def test_stylegan2_num_ws_and_w_plus():
    g = tiny_generator("stylegan2", resolution=64).eval()
    assert g.num_ws == 2 * 5 == g.mapping.num_ws  # 2 per block from 4 to 64 px
    z = torch.randn(3, g.z_dim)
    ws = g.mapping(z)
    assert ws.shape == (3, g.num_ws, g.config.w_dim)
    torch.testing.assert_close(g.synthesis(ws)[0], g(z))
    mixed = ws.clone()
    mixed[:, 6:] = ws.flip(0)[:, 6:]  # style mixing: the fine styles of other samples change the image
    assert not torch.allclose(g.synthesis(mixed)[0], g(z))


def test_stylegan2_tracks_w_avg_only_in_training():
    g = tiny_generator("stylegan2")
    before = g.mapping.w_avg.clone()
    g.eval()(torch.randn(4, g.z_dim))
    assert torch.equal(g.mapping.w_avg, before)
    g.train()(torch.randn(4, g.z_dim))
    assert not torch.equal(g.mapping.w_avg, before)
