"""Same seed, same CPU, same inputs: bit-identical weights from distill(), identical numbers from evaluation.

What differs on CUDA (cuDNN algorithm choice, atomic adds in backward, bf16 autocast) is described in the
README's Reliability section; it is not tested here (no GPU on the test machine).
"""
import json

import pytest
import torch

from gandistill import metrics as M
from gandistill.checkpoint import from_pretrained, save_gan, save_pretrained
from gandistill.config import ClassifierConfig
from gandistill.data import load_dataset, to_uint8
from gandistill.models import build_model
from gandistill.train import distill

from .conftest import tiny_discriminator, tiny_generator

FAST = dict(data="synthetic", batch_size=8, width=0.5, steps=6, log_every=3, sample_every=0, checkpoint_every=3)


def _losses(run) -> list[dict]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in records]  # a timing, not a result


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_two_distill_runs_with_one_seed_give_bit_identical_weights(tmp_path, family):
    teacher = tmp_path / "teacher"
    save_gan(tiny_generator(family), tiny_discriminator(family), teacher)
    runs = []
    for i, outside_seed in enumerate((1, 2)):
        torch.manual_seed(outside_seed)  # what ran before in the process must not matter
        distill(teacher=str(teacher), out=str(tmp_path / f"run{i}"), seed=7, **FAST)
        runs.append(tmp_path / f"run{i}")
    a, b = (from_pretrained(r / "student").state_dict() for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    da, db = (from_pretrained(r / "discriminator", "discriminator").state_dict() for r in runs)
    assert all(torch.equal(da[k], db[k]) for k in da)
    assert _losses(runs[0]) == _losses(runs[1])
    # and another seed gives another student (the test would pass vacuously if the seed did nothing)
    distill(teacher=str(teacher), out=str(tmp_path / "other"), seed=8, **FAST)
    c = from_pretrained(tmp_path / "other" / "student").state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.fixture
def tiny_extractor(tmp_path):
    torch.manual_seed(0)
    model = build_model("classifier", "fmnist-cnn", ClassifierConfig(width=4, feature_dim=16, num_classes=4))
    with torch.no_grad():  # batch-norm statistics of real images: features of unit scale
        model.train()(load_dataset("synthetic", "train").batch(torch.arange(128)))
    return save_pretrained(model.eval(), tmp_path / "cls")


def test_evaluate_and_image_metrics_repeat_exactly(tmp_path, tiny_extractor, monkeypatch):
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    teacher = tiny_generator("dcgan")
    for m in teacher.modules():  # large weights: images vary with z, covariances have full rank
        if isinstance(m, torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(m.weight, 0, 0.2)
    from gandistill.students import make_student

    student = make_student(teacher, 0.5)
    kw = dict(dataset="synthetic", metrics=("fid", "kid", "is"), num_samples=48, seed=[0, 1], batch_size=48,
              extractor_weights=tiny_extractor, paired=8, cache=False, names=["teacher", "student"])
    first = M.evaluate([teacher, student], **kw)
    torch.manual_seed(123)  # global RNG state must not leak into the protocol
    second = M.evaluate([teacher, student], **kw)
    for r1, r2 in zip(first, second, strict=True):
        assert r1["metrics"] == r2["metrics"] and r1["metrics_std"] == r2["metrics_std"]
        assert r1["per_seed"] == r2["per_seed"] and r1["paired"] == r2["paired"]
    assert first[1]["paired"] is not None  # the student was paired with its teacher (PSNR/SSIM compared too)

    real = load_dataset("synthetic", "test", num=64).images
    with torch.no_grad():
        fake = to_uint8(teacher.eval()(torch.randn(64, teacher.z_dim, generator=torch.Generator().manual_seed(0))))
    one = M.image_metrics(fake, real, ("fid", "kid", "is"), extractor_weights=tiny_extractor, batch_size=16)
    two = M.image_metrics(fake, real, ("fid", "kid", "is"), extractor_weights=tiny_extractor, batch_size=16)
    assert one == two and all(v == v for v in one.values())  # equal, and not NaN (NaN != NaN)
