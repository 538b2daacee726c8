"""Bad inputs wherever a user points: image folders (corrupt, empty, odd modes, tiny images) and model paths.

Each case gives one clear line naming the file (exit 1 for a bad file, 2 for a bad command line), or a
documented conversion; no traceback, no output folder or half-written file left behind.
"""
import importlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from gandistill.checkpoint import save_pretrained
from gandistill.cli import main
from gandistill.data import load_dataset, min_image_side

from .conftest import tiny_generator

TRAIN = ["train", "--base-channels", "4", "--steps", "1", "--batch-size", "2", "--sample-every", "0",
         "--log-every", "1"]


def cli(argv, capsys) -> tuple[int, str]:
    """Exit code and stderr of one in-process CLI call (argparse errors included)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- image folders: modes and conversions -------------------------------------------------------------

def _pixel(folder, channels):
    data = load_dataset("image-folder", root=folder, resolution=32, channels=channels)
    assert data.images.shape == (1, channels, 32, 32)
    return data.images[0, :, 16, 16].tolist()


def _palette_with_transparency():
    im = Image.new("P", (40, 40), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.info["transparency"] = 1  # the red index is fully transparent
    return im


@pytest.mark.parametrize("name,make,gray,rgb", [
    ("rgba.png", lambda: Image.new("RGBA", (40, 40), (255, 0, 0, 0)), [0], [0, 0, 0]),  # transparent: black
    ("rgba-half.png", lambda: Image.new("RGBA", (40, 40), (200, 100, 0, 255)), [118], [200, 100, 0]),
    ("la.png", lambda: Image.new("LA", (40, 40), (200, 255)), [200], [200, 200, 200]),
    ("palette.png", lambda: Image.new("P", (40, 40), 0), [0], [0, 0, 0]),
    ("palette-alpha.png", _palette_with_transparency, [0], [0, 0, 0]),
    ("gray16.png", lambda: Image.fromarray(np.full((40, 40), 65535 // 2, np.uint16)), [127], [127, 127, 127]),
    ("cmyk.jpg", lambda: Image.new("CMYK", (40, 40), (0, 0, 0, 0)), [255], [255, 255, 255]),
    ("bilevel.bmp", lambda: Image.new("1", (40, 40), 1), [255], [255, 255, 255]),
])
def test_image_modes_are_converted_as_documented(tmp_path, name, make, gray, rgb):
    make().save(tmp_path / name)
    assert _pixel(tmp_path, 1) == gray
    assert _pixel(tmp_path, 3) == rgb


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    img = load_dataset("image-folder", root=tmp_path, resolution=64, channels=1).images[0, 0]
    expected = torch.from_numpy(np.round(ramp / 257.0).astype(np.uint8))
    assert (img.int() - expected.int()).abs().max() <= 1  # Pillow's own convert("L") would clip to 255
    assert img.float().mean() == pytest.approx(127.5, abs=1)


def test_small_images_are_upsampled_with_a_note_and_tiny_ones_refused(tmp_path, capsys):
    side = min_image_side(32)
    assert side == 16
    Image.new("L", (side, side + 4), 90).save(tmp_path / "small.png")
    data = load_dataset("image-folder", root=tmp_path, resolution=32, channels=1)
    assert data.images.shape == (1, 1, 32, 32) and int(data.images.min()) == int(data.images.max()) == 90
    assert "upsampled 1 image(s) smaller than 32x32" in capsys.readouterr().err
    Image.new("L", (side - 1, 40), 90).save(tmp_path / "tiny.png")
    with pytest.raises(ValueError, match=r"tiny.png: 15x40 is too small: the shorter side must be at least 16 px"):
        load_dataset("image-folder", root=tmp_path, resolution=32, channels=1)


@pytest.mark.parametrize("damage,reason", [
    ("zero", "empty file"),
    ("garbage", "not an image Pillow can identify"),
    ("bomb", "too large to decode safely"),
    ("truncated-png", "corrupt or truncated image"),
    ("truncated-jpg", "corrupt or truncated image"),
    ("float", "32-bit float pixels"),
])
def test_unusable_images_fail_the_load_naming_the_file(tmp_path, damage, reason):
    Image.new("RGB", (40, 40), (0, 128, 0)).save(tmp_path / "good.png")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    bad = tmp_path / "sub" / f"bad-{damage}.{'jpg' if 'jpg' in damage else 'tif' if damage == 'float' else 'png'}"
    bad.parent.mkdir()
    if damage == "zero":
        bad.write_bytes(b"")
    elif damage == "garbage":
        bad.write_bytes(b"just text, not an image " * 20)
    elif damage == "bomb":  # a GIF header whose size bytes claim ~2 gigapixels
        bad.write_bytes(b"GIF89a? no, just text " * 20)
    elif damage.startswith("truncated"):
        noise.save(bad)
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    else:
        Image.fromarray(np.zeros((40, 40), np.float32)).save(bad)
    with pytest.raises(ValueError) as exc:
        load_dataset("image-folder", root=tmp_path, resolution=32, channels=3)
    message = str(exc.value)
    assert f"{bad}: {reason}" in message and "1 of 2 image file(s) cannot be used" in message
    assert "\n" not in message


def test_folders_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no readable images"):
        load_dataset("image-folder", root=tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("not an image")
    (tmp_path / "docs" / ".DS_Store").write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"found only 1 other file\(s\), e.g. readme.txt"):
        load_dataset("image-folder", root=tmp_path / "docs")
    with pytest.raises(NotADirectoryError, match="readme.txt: is a file"):
        load_dataset("image-folder", root=tmp_path / "docs" / "readme.txt")


def test_a_bad_image_folder_through_the_cli(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32)).save(images / "ok.png")
    (images / "zero.png").write_bytes(b"")
    out = tmp_path / "runs" / "r"
    code, err = cli([*TRAIN, "--data", "image-folder", "--data-root", images, "--out", out], capsys)
    assert code == 1 and "zero.png: empty file (0 bytes)" in one_line(err)
    assert not (tmp_path / "runs").exists(), "a failed run leaves no empty folders behind"
    code, err = cli([*TRAIN, "--data", "image-folder", "--out", out], capsys)
    assert code == 2 and "needs --data-root" in one_line(err)
    code, err = cli([*TRAIN, "--data", "image-folder", "--data-root", images / "ok.png", "--out", out], capsys)
    assert code == 2 and "ok.png: is a file; expected a folder" in one_line(err)
    assert not (tmp_path / "runs").exists()


# --- model paths: missing, wrong kind of path, damaged files ------------------------------------------

@pytest.fixture
def model_dir(tmp_path):
    return save_pretrained(tiny_generator("dcgan"), tmp_path / "model")


def _damage(model_dir, what: str) -> str:
    """Damage a saved model; returns the text the error line must contain."""
    weights, config = model_dir / "model.safetensors", model_dir / "config.json"
    meta = json.loads(config.read_text())
    if what == "zero-weights":
        weights.write_bytes(b"")
        return "model.safetensors: empty file"
    if what == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[:-100])
        return "model.safetensors: corrupt or truncated"
    if what == "garbage-weights":
        weights.write_bytes(os.urandom(256))
        return "model.safetensors: corrupt or truncated"
    if what == "no-weights":
        weights.unlink()
        return "model.safetensors: missing"
    if what == "weights-dir":
        weights.unlink()
        weights.mkdir()
        return "model.safetensors: is a directory; expected a safetensors file"
    if what == "invalid-json":
        config.write_text('{"family": "dcgan",')
        return "config.json: not valid JSON"
    if what == "json-list":
        config.write_text("[1, 2]")
        return "config.json: expected a JSON object"
    if what == "unknown-field":
        config.write_text(json.dumps({**meta, "config": {**meta["config"], "depth": 3}}))
        return "bad config: DCGANConfig: unknown field(s) depth"
    if what == "wrong-type":
        config.write_text(json.dumps({**meta, "config": {**meta["config"], "base_channels": "8"}}))
        return "bad config: base_channels must be int, got '8'"
    if what == "config-not-object":
        config.write_text(json.dumps({**meta, "config": [8]}))
        return "bad config: DCGANConfig: expected a JSON object"
    if what == "no-format":
        config.write_text(json.dumps({k: v for k, v in meta.items() if k != "gandistill_format"}))
        return "no gandistill_format field"
    if what == "wrong-shapes":
        config.write_text(json.dumps({**meta, "config": {**meta["config"], "z_dim": 7}}))
        return "has shape"
    raise AssertionError(what)


DAMAGES = ["zero-weights", "truncated-weights", "garbage-weights", "no-weights", "weights-dir", "invalid-json",
           "json-list", "unknown-field", "wrong-type", "config-not-object", "no-format", "wrong-shapes"]


@pytest.mark.parametrize("what", DAMAGES)
def test_damaged_models_give_one_line_naming_the_file(model_dir, what, capsys, tmp_path):
    expected = _damage(model_dir, what)
    for argv in (["info", model_dir], ["sample", model_dir, "--num", "4", "--out", tmp_path / "grid.png"]):
        code, err = cli(argv, capsys)
        assert code == 1 and expected in one_line(err), (argv, err)
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.parametrize("what", ["truncated-weights", "invalid-json", "wrong-shapes"])
def test_a_damaged_teacher_fails_distill_before_the_run_folder_is_kept(tmp_path, capsys, what):
    from gandistill.checkpoint import save_gan

    from .conftest import tiny_discriminator

    save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), tmp_path / "teacher")
    expected = _damage(tmp_path / "teacher" / "generator", what)
    out = tmp_path / "new" / "run"
    code, err = cli(["distill", "--teacher", tmp_path / "teacher", "--data", "synthetic", "--steps", "1",
                     "--out", out], capsys)
    assert code == 1 and expected in one_line(err)
    assert not (tmp_path / "new").exists()


def test_paths_of_the_wrong_kind(tmp_path, capsys, model_dir):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["info", tmp_path / "missing"], 1, "missing: no such directory"),
        (["info", a_file], 1, "file.txt: expected a model directory"),
        (["distill", "--teacher", a_file, "--out", tmp_path / "d"], 1, "file.txt: expected a model directory"),
        (["import", tmp_path, "--family", "dcgan", "--out", tmp_path / "imp"], 1, "expected a file"),
        (["import", tmp_path / "missing.pt", "--family", "dcgan", "--out", tmp_path / "imp"], 1, "missing.pt: missing"),
        ([*TRAIN, "--data", "synthetic", "--out", a_file], 2, "file.txt: is a file; expected a directory"),
        ([*TRAIN, "--data", "synthetic", "--out", a_file / "run"], 2, "file.txt is a file, not a folder"),
        (["sample", model_dir, "--out", tmp_path], 2, "is a directory; expected a file"),
        (["profile", model_dir, "--out", tmp_path], 2, "is a directory; expected a file"),
        (["eval", model_dir, "--out", tmp_path], 2, "is a directory; expected a file"),
        (["export", model_dir, "--format", "torchscript", "--out", tmp_path], 2, "is a directory"),
        (["import", a_file, "--family", "dcgan", "--out", a_file], 2, "is a file; expected a directory"),
        (["import", a_file, "--family", "dcgan", "--config", "[1]", "--out", tmp_path / "i"], 2, "JSON object"),
    ]
    for argv, code, message in cases:
        got, err = cli(argv, capsys)
        assert got == code and message in one_line(err), (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "model"]


def test_import_of_a_file_that_does_not_fit_writes_nothing(tmp_path, capsys):
    state = tiny_generator("dcgan").state_dict()
    state["to_img.weight"] = torch.zeros(3, 3)  # wrong shape
    torch.save(state, tmp_path / "g.pth")
    code, err = cli(["import", tmp_path / "g.pth", "--family", "dcgan", "--config", '{"base_channels": 8}',
                     "--out", tmp_path / "out" / "g"], capsys)
    assert code == 1 and "does not fit a dcgan generator" in one_line(err)
    assert not (tmp_path / "out").exists()
    (tmp_path / "garbage.pth").write_bytes(os.urandom(100))
    code, err = cli(["import", tmp_path / "garbage.pth", "--family", "dcgan", "--out", tmp_path / "out"], capsys)
    assert code == 1 and "garbage.pth: unreadable or unsafe state file" in one_line(err)


def test_an_unwritable_output_folder(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    for argv in ([*TRAIN, "--data", "synthetic", "--out", locked / "run"],
                 ["sample", tmp_path / "nowhere", "--out", locked / "grid.png"]):
        code, err = cli(argv, capsys)
        assert code == 1 and f"{locked} is not writable" in one_line(err)
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere; the monkeypatched test above covers it")
def test_a_read_only_folder_for_real(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = cli([*TRAIN, "--data", "synthetic", "--out", locked / "run"], capsys)
    assert code == 1 and "not writable" in one_line(err)


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(model_dir, capsys, monkeypatch):
    profile_mod = importlib.import_module("gandistill.profile")  # gandistill.profile is the function

    def broken(model):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(profile_mod, "count_params", broken)
    code, err = cli(["info", model_dir], capsys)
    assert code == 1
    assert "unexpected RuntimeError: first line; second line (rerun with --debug" in one_line(err)
    with pytest.raises(RuntimeError):
        main(["--debug", "info", str(model_dir)])
