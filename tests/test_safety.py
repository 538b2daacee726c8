"""gandistill.safety: the torch floor for untrusted files (CVE-2025-32434) and the weight check every loader uses."""
import pytest
import torch

from gandistill.safety import check_weights, require_safe_torch


@pytest.mark.parametrize("version", ["2.5.1", "2.5.1+cu124", "2.1.0", "1.13.1", "garbage"])
def test_an_old_torch_is_refused_naming_the_cve(monkeypatch, version):
    monkeypatch.setattr(torch, "__version__", version)
    with pytest.raises(RuntimeError) as err:
        require_safe_torch()
    message = str(err.value)
    assert "CVE-2025-32434" in message and f"torch {version}" in message and "\n" not in message


@pytest.mark.parametrize("version", ["2.6.0", "2.6.0+cpu", "2.14.1+cu130", "3.0.0", "10.1"])
def test_a_safe_torch_passes(monkeypatch, version):
    monkeypatch.setattr(torch, "__version__", version)
    require_safe_torch()


def test_the_installed_torch_passes_and_pyproject_floors_it():
    from pathlib import Path

    require_safe_torch()
    assert '"torch>=2.6",' in (Path(__file__).parents[1] / "pyproject.toml").read_text()


@pytest.mark.parametrize(("tensor", "words"), [
    (torch.ones(3).to(torch.float8_e4m3fn), "w is float8_e4m3fn, expected floating-point weights"),
    (torch.ones(3).to(torch.float8_e5m2), "w is float8_e5m2, expected floating-point weights"),
    (torch.ones(3, dtype=torch.int64), "w is int64, expected floating-point weights"),
    (torch.ones(3, dtype=torch.bool), "w is bool, expected floating-point weights"),
    (torch.ones(3, dtype=torch.complex64), "w is complex64, expected floating-point weights"),
    (torch.tensor([1.0, float("nan"), 0.0]), "w holds non-finite values (NaN or inf)"),
    (torch.tensor([float("inf")], dtype=torch.bfloat16), "w holds non-finite values (NaN or inf)"),
])
def test_check_weights_refuses_in_one_line(tensor, words):
    with pytest.raises(ValueError) as err:
        check_weights({"w": tensor}, {"w": torch.zeros(3)}, "model.safetensors")
    assert str(err.value).startswith(f"model.safetensors: {words}")
    assert "\n" not in str(err.value)


def test_check_weights_admits_float_kinds_and_integer_counters():
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        check_weights({"w": torch.ones(2, dtype=dtype)}, {"w": torch.zeros(2)}, "x")
    check_weights({"n": torch.tensor(3, dtype=torch.int32)}, {"n": torch.tensor(0)}, "x")
    for bad in (torch.tensor(3.0), torch.tensor(True)):
        with pytest.raises(ValueError, match=r"^x: n is (float32|bool), expected int64$"):
            check_weights({"n": bad}, {"n": torch.tensor(0)}, "x")


def test_a_refused_pickle_is_explained_without_torchs_advice_to_run_it(tmp_path, capsys):
    """torch's message suggests weights_only=False ("will likely succeed"), which runs the file's code: the
    one-line refusal names what the file asked for and never passes that advice on."""
    import os

    from gandistill.cli import main

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    torch.save({"netG": Evil()}, tmp_path / "evil.pth")
    assert main(["import", str(tmp_path / "evil.pth"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "system" in err
    assert "weights_only" not in err and "likely succeed" not in err and "\x1b[" not in err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "o").exists()
