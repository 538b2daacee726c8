import json
import os

import pytest
import torch

from gandistill.checkpoint import (
    atomic_write,
    from_pretrained,
    load_gan,
    load_state,
    save_gan,
    save_pretrained,
    save_state,
)

from .conftest import tiny_discriminator, tiny_generator


@pytest.fixture
def saved(tmp_path):
    save_pretrained(tiny_generator("dcgan"), tmp_path / "g")
    return tmp_path / "g"


def test_missing_directory_and_files(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="nowhere: no such directory"):
        from_pretrained(tmp_path / "nowhere")
    (saved / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors: missing"):
        from_pretrained(saved)
    (saved / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json: missing"):
        from_pretrained(saved)


def test_a_file_where_a_directory_is_expected(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="expected a model directory"):
        from_pretrained(tmp_path / "f")


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_corrupt_weights_name_the_file(saved, damage):
    path = saved / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\x00" * 64}[damage])
    with pytest.raises(ValueError, match="model.safetensors: (corrupt|empty)"):
        from_pretrained(saved)


def test_bad_config_json(saved):
    path = saved / "config.json"
    meta = json.loads(path.read_text())
    path.write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        from_pretrained(saved)
    path.write_text(json.dumps({**meta, "family": "biggan"}))
    with pytest.raises(ValueError, match="unknown family 'biggan'"):
        from_pretrained(saved)
    path.write_text(json.dumps({**meta, "gandistill_format": 99}))
    with pytest.raises(ValueError, match="format version 99 is newer"):
        from_pretrained(saved)
    path.write_text(json.dumps({**meta, "config": {**meta["config"], "width": 7}}))
    with pytest.raises(ValueError, match="bad config: width"):
        from_pretrained(saved)


def test_weights_that_do_not_match_the_config(saved):
    path = saved / "config.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "config": {**meta["config"], "base_channels": 16}}))
    with pytest.raises(ValueError, match="model.safetensors: .*shape"):
        from_pretrained(saved)


def test_kind_is_checked(saved):
    with pytest.raises(ValueError, match="holds a generator, expected a discriminator"):
        from_pretrained(saved, kind="discriminator")


def test_gan_directory_round_trip(tmp_path):
    g, d = tiny_generator("stylegan2"), tiny_discriminator("stylegan2")
    save_gan(g, d, tmp_path / "gan")
    g2, d2 = load_gan(tmp_path / "gan")
    assert type(g2) is type(g) and type(d2) is type(d)
    assert from_pretrained(tmp_path / "gan").config == g.config  # a GAN dir resolves to its generator
    save_gan(g, None, tmp_path / "gonly")
    assert load_gan(tmp_path / "gonly")[1] is None


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "state.pt"
    target.write_bytes(b"old")

    def failing(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.pt"]  # no temp file left behind


class _Payload:
    """Unpickling this would run code: the marker file proves whether it happened."""

    marker = None

    def __reduce__(self):
        return (open, (str(_Payload.marker), "w"))


def test_load_state_refuses_pickled_code(tmp_path):
    _Payload.marker = tmp_path / "code-ran"
    torch.save({"step": 1, "evil": _Payload()}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="unreadable or unsafe state file"):
        load_state(tmp_path / "state.pt")
    assert not _Payload.marker.exists()


def test_state_round_trip_and_errors(tmp_path):
    state = {"step": 3, "rng": torch.get_rng_state(), "nested": {"lr": 0.5, "list": [1, 2]}}
    save_state(state, tmp_path / "state.pt")
    loaded = load_state(tmp_path / "state.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["rng"], state["rng"]) and loaded["nested"] == state["nested"]
    with pytest.raises(FileNotFoundError, match="nothing.pt: no resumable state"):
        load_state(tmp_path / "nothing.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty state file"):
        load_state(tmp_path / "empty.pt")
    data = (tmp_path / "state.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="cut.pt: unreadable"):
        load_state(tmp_path / "cut.pt")


def test_saving_the_same_model_twice_gives_identical_bytes(tmp_path):
    """Cards quote a model's sha256: the same weights must give the same file (no random header order)."""
    import hashlib

    from safetensors import safe_open

    from .conftest import tiny_generator

    g = tiny_generator("stylegan2")
    digests = set()
    for i in range(6):
        save_pretrained(g, tmp_path / f"s{i}")
        digests.add(hashlib.sha256((tmp_path / f"s{i}" / "model.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1
    with safe_open(tmp_path / "s0" / "model.safetensors", "pt") as f:  # still a safetensors file, read by its library
        assert f.metadata()["family"] == "stylegan2" and sorted(f.keys()) == sorted(g.state_dict())
    loaded = from_pretrained(tmp_path / "s0")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), g.state_dict().values(), strict=True))
