"""CUDA paths: skipped without a GPU; scripts/gpu_check.sh runs them when one is at hand."""
import pytest
import torch

from gandistill.checkpoint import from_pretrained, save_gan
from gandistill.train import distill, train

from .conftest import tiny_discriminator, tiny_generator

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
FAST = dict(data="synthetic", batch_size=16, log_every=5, sample_every=0, checkpoint_every=5, device="cuda")


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_distill_with_bf16_autocast(tmp_path, family):
    save_gan(tiny_generator(family), tiny_discriminator(family), tmp_path / "t")
    result = distill(teacher=str(tmp_path / "t"), out=str(tmp_path / "d"), steps=10, amp=True,
                     channels_last=True, **FAST)
    assert result.status == "completed" and result.bad_steps == 0
    student = from_pretrained(tmp_path / "d" / "student")
    assert all(torch.isfinite(p).all() for p in student.parameters())


def test_train_on_cuda_resumes_exactly(tmp_path):
    full = train(out=str(tmp_path / "a"), base_channels=8, steps=8, **FAST)
    train(out=str(tmp_path / "b"), base_channels=8, steps=4, **FAST)
    resumed = train(out=str(tmp_path / "b"), base_channels=8, steps=8, resume=True, **FAST)
    a, b = full.generator.state_dict(), resumed.generator.state_dict()
    # cuDNN may pick non-deterministic kernels: report the difference rather than demand bit equality
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff < 1e-3, f"resumed run differs from the uninterrupted one by {diff}"


def test_dcgan_inference_form_on_cuda():
    from gandistill.models import for_inference

    torch.manual_seed(0)
    g = tiny_generator("dcgan").cuda().eval()
    served = for_inference(g)
    assert all(p.device.type == "cuda" for p in served.parameters())
    z = torch.randn(8, g.z_dim, device="cuda")
    with torch.no_grad():
        # TF32 may be on for convolutions: agree to its rounding, not float32's
        torch.testing.assert_close(served(z), g(z), rtol=0, atol=1e-3)
