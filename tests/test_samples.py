"""Sample grids: layout, same-z comparison, interpolation, the CLI."""
import numpy as np
import pytest
import torch
from PIL import Image

from gandistill.checkpoint import save_pretrained
from gandistill.cli import main
from gandistill.data import to_uint8
from gandistill.metrics import latents as metrics_latents
from gandistill.samples import grid_array, latents, sample, save_grid, side_by_side, slerp
from gandistill.students import make_student

from .conftest import tiny_generator


def test_grid_array_layout():
    img = torch.linspace(-1, 1, 5).view(5, 1, 1, 1).expand(5, 1, 3, 4)
    grid = grid_array(img, nrow=2, padding=1)
    assert grid.shape == (3 * (3 + 1) + 1, 2 * (4 + 1) + 1, 1)
    # image 3 sits in row 1, column 1
    y, x = 1 + 1 * 4, 1 + 1 * 5
    assert (grid[y:y + 3, x:x + 4] == to_uint8(img[3]).permute(1, 2, 0).numpy()).all()
    assert grid[0].max() == 0  # padding is dark


def test_save_grid_png(tmp_path):
    img = torch.rand(6, 3, 8, 8) * 2 - 1
    path = save_grid(img, tmp_path / "g.png", nrow=3, scale=2)
    with Image.open(path) as im:
        assert im.size == (2 * (3 * 10 + 2), 2 * (2 * 10 + 2)) and im.mode == "RGB"


def test_side_by_side_interleaves_rows():
    a = torch.zeros(4, 1, 2, 2)
    b = torch.ones(4, 1, 2, 2)
    out = side_by_side(a, b, nrow=2)
    assert out[:, 0, 0, 0].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]


def test_latents_are_the_evaluation_latents():
    assert torch.equal(latents(7, 5, 3), metrics_latents(7, 5, 3))
    assert torch.equal(latents(7, 5, 3)[:4], latents(4, 5, 3))  # a prefix does not depend on the count
    assert not torch.equal(latents(4, 5, 3), latents(4, 5, 4))


def test_slerp_endpoints_and_norm():
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert path.shape == (3, 5, 16)
    assert torch.allclose(path[:, 0], a, atol=1e-5) and torch.allclose(path[:, -1], b, atol=1e-5)
    mid_norm = path[:, 2].norm(dim=1)
    assert torch.allclose(mid_norm, (a.norm(dim=1) + b.norm(dim=1)) / 2, atol=1e-4)


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_sample_is_deterministic_and_compare_uses_the_same_z(family):
    teacher = tiny_generator(family).train()  # sample() must draw in eval mode (StyleGAN2: constant noise)
    for m in teacher.modules():  # StyleGAN2's noise strengths start at 0: make the noise matter
        if hasattr(m, "strength"):
            torch.nn.init.constant_(m.strength, 0.5)
    first = sample(teacher, num=16, seed=1)
    assert first.shape == (16, 1, 32, 32) and torch.equal(first, sample(teacher, num=16, seed=1))
    assert not torch.equal(first, sample(teacher, num=16, seed=2))
    twin = make_student(teacher, 1.0)  # the same function: every compared pair of rows must match
    pairs = sample(teacher, num=16, seed=1, compare=twin, nrow=8)
    assert pairs.shape == (32, 1, 32, 32)
    assert torch.allclose(pairs[0:8], pairs[8:16], atol=1e-5) and torch.allclose(pairs[16:24], pairs[24:32], atol=1e-5)
    assert torch.equal(pairs[0:8], first[0:8]) and torch.equal(pairs[16:24], first[8:16])
    assert teacher.training


def test_interpolation_rows_run_between_two_latents():
    g = tiny_generator("dcgan")
    rows = sample(g, num=16, seed=0, interpolate=True, nrow=4)
    assert rows.shape == (16, 1, 32, 32)
    ends = latents(8, g.z_dim, 0)  # 4 rows: starts are latents 0..3, ends 4..7
    with torch.no_grad():
        expected_first = g.eval()(ends[:4])
        expected_last = g(ends[4:])
    grid = rows.view(4, 4, 1, 32, 32)
    assert torch.allclose(grid[:, 0], expected_first, atol=1e-4)
    assert torch.allclose(grid[:, -1], expected_last, atol=1e-4)


def test_sample_rejects_mismatched_generators():
    with pytest.raises(ValueError, match="z_dim"):
        sample(tiny_generator("dcgan"), num=4, compare=tiny_generator("stylegan2"))
    with pytest.raises(ValueError, match="num"):
        sample(tiny_generator("dcgan"), num=0)


def test_cli_sample(tmp_path, capsys):
    teacher = tiny_generator("dcgan")
    save_pretrained(teacher, tmp_path / "teacher")
    save_pretrained(make_student(teacher, 0.5), tmp_path / "student")
    out = tmp_path / "grid.png"
    assert main(["sample", str(tmp_path / "teacher"), "--num", "16", "--seed", "3", "--out", str(out),
                 "--compare", str(tmp_path / "student")]) == 0
    with Image.open(out) as im:
        arr = np.asarray(im)
    assert arr.shape == (4 * 34 + 2, 8 * 34 + 2)  # 2 generators x 2 rows of 8, 32px + 2px padding
    expected = grid_array(sample(str(tmp_path / "teacher"), num=16, seed=3, compare=str(tmp_path / "student")),
                          nrow=8)[..., 0]
    assert np.array_equal(arr, expected)

    assert main(["sample", str(tmp_path / "teacher"), "--num", "8", "--interpolate", "--nrow", "4",
                 "--out", str(tmp_path / "interp.png")]) == 0
    with Image.open(tmp_path / "interp.png") as im:
        assert im.size == (4 * 34 + 2, 2 * 34 + 2)
    assert main(["sample", str(tmp_path / "teacher"), "--num", "0", "--out", str(out)]) == 2
    assert main(["sample", str(tmp_path / "nothing"), "--out", str(out)]) == 1
