"""Importing generator/discriminator state dicts saved by plain PyTorch."""
import pytest
import torch

from gandistill.checkpoint import import_state_dict

from .conftest import TINY, tiny_discriminator, tiny_generator


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
@pytest.mark.parametrize("wrap", ["plain", "state_dict", "data_parallel"])
def test_import_round_trip(tmp_path, family, wrap):
    g = tiny_generator(family).eval()
    state = g.state_dict()
    if wrap == "state_dict":
        state = {"state_dict": state, "epoch": 3}
    elif wrap == "data_parallel":
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save(state, tmp_path / "g.pth")
    model, report = import_state_dict(tmp_path / "g.pth", family, config=TINY[family])
    assert not report.missing and not report.unexpected and not report.mismatched
    z = torch.randn(3, g.z_dim)
    assert torch.equal(model(z), g(z))


def test_mismatches_are_reported(tmp_path):
    state = tiny_generator("dcgan").state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["to_img.bias"]
    torch.save(state, tmp_path / "g.pt")
    with pytest.raises(ValueError, match="missing 1 \\(to_img.bias\\); unexpected 1 \\(extra.weight\\)"):
        import_state_dict(tmp_path / "g.pt", "dcgan", config=TINY["dcgan"])
    model, report = import_state_dict(tmp_path / "g.pt", "dcgan", config=TINY["dcgan"], strict=False)
    assert report.missing == ["to_img.bias"] and report.unexpected == ["extra.weight"]
    with pytest.raises(ValueError, match="mismatched"):
        import_state_dict(tmp_path / "g.pt", "dcgan", config={"base_channels": 16})


def test_discriminator_import(tmp_path):
    d = tiny_discriminator("dcgan")
    torch.save({"D": 1, "model": d.state_dict()}, tmp_path / "d.pt")
    model, report = import_state_dict(tmp_path / "d.pt", "dcgan", kind="discriminator", config=TINY["dcgan"])
    assert report.source_key == "model" and len(report.loaded) == len(d.state_dict())


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path, capsys):
    torch.save({"state_dict": tiny_generator("dcgan").state_dict(), "evil": _Evil()}, tmp_path / "g.pt")
    with pytest.raises(ValueError, match="unsafe"):
        import_state_dict(tmp_path / "g.pt", "dcgan", config=TINY["dcgan"])
    assert "pwned" not in capsys.readouterr().out


def test_not_a_state_dict(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="no state dict of tensors"):
        import_state_dict(tmp_path / "x.pt", "dcgan")
    with pytest.raises(FileNotFoundError):
        import_state_dict(tmp_path / "nope.pt", "dcgan")


def test_cli_import(tmp_path, capsys):
    from gandistill.checkpoint import from_pretrained
    from gandistill.cli import main

    g = tiny_generator("dcgan").eval()
    torch.save({"state_dict": g.state_dict()}, tmp_path / "g.pth")
    assert main(["import", str(tmp_path / "g.pth"), "--family", "dcgan", "--config", '{"base_channels": 8}',
                 "--out", str(tmp_path / "out")]) == 0
    assert "loaded" in capsys.readouterr().out
    z = torch.randn(2, g.z_dim)
    assert torch.equal(from_pretrained(tmp_path / "out")(z), g(z))
    assert main(["import", str(tmp_path / "g.pth"), "--family", "dcgan", "--config", "[1]", "--out",
                 str(tmp_path / "o2")]) == 2
    assert main(["import", str(tmp_path / "g.pth"), "--family", "dcgan", "--out", str(tmp_path / "o3")]) == 1
    assert "does not fit" in capsys.readouterr().err
    assert not (tmp_path / "o3").exists()
