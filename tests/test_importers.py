"""Importers of checkpoints trained elsewhere: parity with the original modules, refusals, nothing executed."""
import re

import pytest
import torch
from torch import nn

from gandistill.importers import ImportRefused, import_checkpoint

from .conftest import load_script

# --- the PyTorch DCGAN example's layout, built here as plain nn.Sequential modules ---------------------------

class TutorialG(nn.Module):
    """pytorch/examples dcgan's Generator: ``main`` = (ConvT, BN, ReLU) x L, ConvT, Tanh; z is [N, nz, 1, 1]."""

    def __init__(self, nz, ngf, nc, resolution, image_bias=False, hidden_bias=False):
        super().__init__()
        mults = [8, 4, 2, 1] if resolution == 64 else [4, 2, 1]
        layers, prev = [], nz
        for i, m in enumerate(mults):
            layers += [nn.ConvTranspose2d(prev, ngf * m, 4, 1 if i == 0 else 2, 0 if i == 0 else 1,
                                          bias=hidden_bias),
                       nn.BatchNorm2d(ngf * m), nn.ReLU(True)]
            prev = ngf * m
        layers += [nn.ConvTranspose2d(prev, nc, 4, 2, 1, bias=image_bias), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z):
        return self.main(z)


class TutorialD(nn.Module):
    """pytorch/examples dcgan's Discriminator: Conv, LReLU, (Conv, BN, LReLU) x L-1, Conv to 1, Sigmoid."""

    def __init__(self, ndf, nc, resolution, hidden_bias=False):
        super().__init__()
        mults = [1, 2, 4, 8] if resolution == 64 else [1, 2, 4]
        layers, prev = [], nc
        for i, m in enumerate(mults):
            # hidden_bias: biases on the convolutions a batch norm follows (the ones it can absorb)
            layers.append(nn.Conv2d(prev, ndf * m, 4, 2, 1, bias=hidden_bias and i > 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(ndf * m))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            prev = ndf * m
        layers += [nn.Conv2d(prev, 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1)


def _trained_looking(module: nn.Module) -> nn.Module:
    """Random weights and batch-norm statistics far from their (0, 1) defaults, as after training."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0, 0.05)
                if m.bias is not None:
                    m.bias.normal_(0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.2, 3.0)
                m.num_batches_tracked.fill_(1234)
    return module.eval()


def save_tutorial(path, resolution=64, nc=3, nz=100, ngf=8, ndf=8, image_bias=False, with_d=True, wrap="dict",
                  hidden_bias=False):
    """Save the layout the way those scripts do; returns (netG, netD or None)."""
    torch.manual_seed(1)
    g = _trained_looking(TutorialG(nz, ngf, nc, resolution, image_bias, hidden_bias))
    d = _trained_looking(TutorialD(ndf, nc, resolution, hidden_bias)) if with_d else None
    if wrap == "bare":
        torch.save(g.state_dict(), path)
    elif wrap == "dict":
        state = {"epoch": 5, "netG_state_dict": g.state_dict()}
        if d is not None:
            state["netD_state_dict"] = d.state_dict()
            state["optimizerD_state_dict"] = torch.optim.Adam(d.parameters()).state_dict()
        torch.save(state, path)
    else:
        torch.save({wrap: g.state_dict(), **({"netD": d.state_dict()} if d is not None else {})}, path)
    return g, d


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("nc", [1, 3])
@pytest.mark.parametrize(("image_bias", "hidden_bias"), [(False, False), (True, False), (True, True)])
def test_dcgan_tutorial_parity(tmp_path, resolution, nc, image_bias, hidden_bias):
    """hidden_bias: biases on the convolutions before each batch norm, which our layers fold into its mean."""
    g, d = save_tutorial(tmp_path / "ckpt.pth", resolution, nc, nz=20, ngf=8, ndf=4, image_bias=image_bias,
                         hidden_bias=hidden_bias)
    imported = import_checkpoint(tmp_path / "ckpt.pth")
    assert imported.format == "pytorch-dcgan"
    cfg = imported.generator.config
    assert (cfg.resolution, cfg.channels, cfg.z_dim, cfg.base_channels, cfg.image_bias) == \
        (resolution, nc, 20, 8, image_bias)
    z = torch.randn(16, 20)
    with torch.no_grad():
        ours, theirs = imported.generator(z), g(z[:, :, None, None])
        assert ours.shape == (16, nc, resolution, resolution)
        assert (ours - theirs).abs().max() <= 1e-5
        # netD: our logits are the pre-sigmoid output of theirs
        dcfg = imported.discriminator.config
        assert (dcfg.base_channels, dcfg.disc_batch_norm, dcfg.spectral_norm) == (4, True, False)
        img = theirs
        assert (torch.sigmoid(imported.discriminator(img)) - d(img)).abs().max() <= 1e-5


@pytest.mark.parametrize("wrap", ["bare", "generator", "netG", "state_dict"])
def test_dcgan_wrappers_and_generator_only(tmp_path, wrap):
    g, _ = save_tutorial(tmp_path / "g.pt", 32, 1, nz=10, ngf=4, with_d=False, wrap=wrap)
    imported = import_checkpoint(tmp_path / "g.pt", format="pytorch-dcgan")
    assert imported.discriminator is None
    z = torch.randn(4, 10)
    with torch.no_grad():
        assert (imported.generator(z) - g(z[:, :, None, None])).abs().max() <= 1e-5
    report = imported.report()
    assert "main.0" in report and "blocks.0.conv" in report and "discriminator: none" in report


def test_dcgan_safetensors(tmp_path):
    from safetensors.torch import save_file

    g = _trained_looking(TutorialG(12, 4, 3, 64))
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, tmp_path / "g.safetensors")
    imported = import_checkpoint(tmp_path / "g.safetensors")
    z = torch.randn(3, 12)
    with torch.no_grad():
        assert (imported.generator(z) - g(z[:, :, None, None])).abs().max() <= 1e-5


def test_imported_student_and_inference_form(tmp_path):
    """An imported generator without an image bias goes through surgery and the folded inference form."""
    from gandistill import make_student
    from gandistill.models import for_inference

    g, _ = save_tutorial(tmp_path / "g.pth", 64, 3, nz=16, ngf=8, with_d=False)
    teacher = import_checkpoint(tmp_path / "g.pth").generator
    student = make_student(teacher, 1.0).eval()
    z = torch.randn(5, 16)
    with torch.no_grad():
        assert torch.allclose(student(z), teacher(z), atol=1e-6)
        assert (for_inference(teacher)(z) - g(z[:, :, None, None])).abs().max() <= 1e-5
        assert make_student(teacher, 0.5).eval()(z).shape == (5, 3, 64, 64)


def test_discriminator_given_as_generator(tmp_path):
    d = _trained_looking(TutorialD(8, 3, 64))
    torch.save(d.state_dict(), tmp_path / "netD.pth")
    with pytest.raises(ValueError, match="holds a DCGAN discriminator .* expected a generator"):
        import_checkpoint(tmp_path / "netD.pth")


@pytest.mark.parametrize("layer", ["main.0", "main.11"])
def test_a_discriminator_bias_no_batch_norm_absorbs_is_refused(tmp_path, layer):
    g = _trained_looking(TutorialG(10, 8, 3, 64))
    d = _trained_looking(TutorialD(8, 3, 64)).state_dict()
    d[f"{layer}.bias"] = torch.full((d[f"{layer}.weight"].shape[0],), 0.3)  # the first or the logit layer
    torch.save({"netG": g.state_dict(), "netD": d}, tmp_path / "ckpt.pth")
    with pytest.raises(ImportRefused, match=rf"\(netD\): {layer} has a bias that no batch norm follows; .* its "
                                            r"logits would differ$"):
        import_checkpoint(tmp_path / "ckpt.pth")


BAD_TENSORS = {  # what a damaged or hostile checkpoint holds -> the words of the one-line refusal
    "nan": (lambda t: torch.full_like(t, float("nan")), "holds non-finite values (NaN or inf)"),
    "inf": (lambda t: t.clone().fill_(float("-inf")), "holds non-finite values (NaN or inf)"),
    "int64": (lambda t: t.to(torch.int64), "is int64, expected floating-point weights"),
    "bool": (lambda t: t.bool(), "is bool, expected floating-point weights"),
    "float8": (lambda t: t.to(torch.float8_e4m3fn), "is float8_e4m3fn, expected floating-point weights"),
    "complex": (lambda t: t.to(torch.complex64), "is complex64, expected floating-point weights"),
}


@pytest.mark.parametrize("bad", sorted(BAD_TENSORS))
@pytest.mark.parametrize("name", ["netG_state_dict/main.0.weight", "netG_state_dict/main.3.bias",
                                  "netG_state_dict/main.1.running_var", "netG_state_dict/main.12.bias",
                                  "netD_state_dict/main.2.bias", "netD_state_dict/main.3.running_mean"])
def test_import_refuses_bad_tensors_in_one_line(tmp_path, capsys, bad, name):
    """NaN, integer, bool, float8 or complex tensors where a weight belongs: never cast, folded or written."""
    from gandistill.cli import main

    make, words = BAD_TENSORS[bad]
    save_tutorial(tmp_path / "ckpt.pth", 64, 3, nz=8, ngf=4, ndf=4, image_bias=True, hidden_bias=True)
    ckpt = torch.load(tmp_path / "ckpt.pth", weights_only=True)
    net, key = name.split("/")
    ckpt[net][key] = make(ckpt[net][key])
    torch.save(ckpt, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match=re.escape(f"({net}): {key} {words}")):
        import_checkpoint(tmp_path / "ckpt.pth")
    assert main(["import", str(tmp_path / "ckpt.pth"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{key} {words}" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_import_refuses_a_float_counter(tmp_path):
    save_tutorial(tmp_path / "ckpt.pth", 32, 1, nz=8, ngf=4, with_d=False, wrap="bare")
    state = torch.load(tmp_path / "ckpt.pth", weights_only=True)
    state["main.1.num_batches_tracked"] = torch.tensor(3.5)
    torch.save(state, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match=r"main.1.num_batches_tracked is float32, expected int64$"):
        import_checkpoint(tmp_path / "ckpt.pth")


def test_shapes_that_fit_no_size(tmp_path):
    g = TutorialG(10, 8, 3, 64)
    state = g.state_dict()
    state["main.3.weight"] = torch.zeros(64, 24, 4, 4)  # 64 -> 24 -> 16: not halving
    state["main.4.weight"] = torch.zeros(24)
    for name in ("bias", "running_mean", "running_var"):
        state[f"main.4.{name}"] = torch.zeros(24)
    state["main.6.weight"] = torch.zeros(24, 16, 4, 4)
    torch.save(state, tmp_path / "g.pth")
    with pytest.raises(ValueError, match=r"fit no known size: found transposed convolutions \[\[10, 64, 4, 4\], "
                                         r"\[64, 24, 4, 4\]"):
        import_checkpoint(tmp_path / "g.pth")


def test_unknown_layout(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"unknown checkpoint layout: found a state dict of 1 tensors "
                                         r"\(encoder.weight\); expected one of: nvlabs-pkl"):
        import_checkpoint(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a pytorch-dcgan checkpoint"):
        import_checkpoint(tmp_path / "x.pt", format="pytorch-dcgan")
    with pytest.raises(ValueError, match="unknown import format 'nope'"):
        import_checkpoint(tmp_path / "x.pt", format="nope")


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED_MARKER', 'w').write('x')",))


def test_malicious_torch_file_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"netG_state_dict": TutorialG(10, 4, 1, 32).state_dict(), "x": _Evil()}, tmp_path / "g.pth")
    with pytest.raises(ValueError, match="unsafe"):
        import_checkpoint(tmp_path / "g.pth")
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_cli_import_report_and_refusals(tmp_path, capsys):
    from gandistill.checkpoint import load_gan
    from gandistill.cli import main

    g, d = save_tutorial(tmp_path / "ckpt.pth", 64, 3, nz=16, ngf=4, ndf=4)
    out = tmp_path / "imported"
    assert main(["import", str(tmp_path / "ckpt.pth"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "format:  pytorch-dcgan" in text and "netG_state_dict" in text and "main.12" in text
    assert len(text.splitlines()) <= 40  # one screen
    generator, discriminator = load_gan(out)
    z = torch.randn(4, 16)
    with torch.no_grad():
        assert (generator(z) - g(z[:, :, None, None])).abs().max() <= 1e-5
        assert (torch.sigmoid(discriminator(g(z[:, :, None, None]))) - d(g(z[:, :, None, None]))).abs().max() <= 1e-5
    assert main(["info", str(out)]) == 0
    assert "image_bias=False" in capsys.readouterr().out

    # bad checkpoints: one line naming what was found and what was expected, exit 1, nothing written
    netd = tmp_path / "netD.pth"
    torch.save(d.state_dict(), netd)
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    for bad, words in ((netd, "expected a generator"), (tmp_path / "other.pt", "unknown checkpoint layout")):
        assert main(["import", str(bad), "--out", str(tmp_path / "bad")]) == 1
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()
    assert main(["import", str(tmp_path / "ckpt.pth"), "--out", str(out)]) == 2  # not empty: refused
    assert main(["import", str(tmp_path / "ckpt.pth"), "--config", "{}", "--kind", "discriminator",
                 "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("data", ["none", "image-folder"])
def test_distill_a_generator_only_import_at_64px_rgb(tmp_path, capsys, data):
    """The full-size tutorial generator (nz 100, ngf 64, 64x64 RGB), no netD: distill with the defaults."""
    from PIL import Image

    from gandistill.checkpoint import from_pretrained
    from gandistill.cli import main

    save_tutorial(tmp_path / "netG.pth", 64, 3, nz=100, ngf=64, with_d=False, wrap="bare")
    assert main(["import", str(tmp_path / "netG.pth"), "--out", str(tmp_path / "teacher")]) == 0
    flags = ["--data", data]
    if data == "image-folder":
        (tmp_path / "imgs").mkdir()
        for i in range(6):
            Image.new("RGB", (64, 64), (40 * i, 255 - 40 * i, 128)).save(tmp_path / "imgs" / f"{i}.png")
        flags += ["--data-root", str(tmp_path / "imgs")]
    capsys.readouterr()
    assert main(["distill", "--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "run"), "--width",
                 "0.25", "--steps", "2", "--batch-size", "4", "--sample-every", "0", "--log-every", "1",
                 *flags]) == 0
    assert "disc_feature and disc_kl are off" in capsys.readouterr().err
    student = from_pretrained(tmp_path / "run" / "student")
    assert student.config.base_channels == 64 and student.config.width == 0.25
    assert not student.config.image_bias  # inherited from the imported teacher
    assert student(torch.randn(2, 100)).shape == (2, 3, 64, 64)
    assert from_pretrained(tmp_path / "run" / "discriminator", "discriminator").config.resolution == 64


# --- NVlabs pickles: read without running code (parity with the original code: tests/test_stylegan2.py) ------

MODULE_SRC = "open('PWNED_MARKER', 'w').write('module_src ran')\nclass Generator: pass\n"


def _fake_nvlabs_modules(monkeypatch):
    """Stand-ins for NVlabs' torch_utils.persistence and dnnlib, only so that pickle can name them when writing."""
    import sys
    import types

    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the file's own reconstructor must never be called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    dnnlib_util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    dnnlib_util.EasyDict = EasyDict
    for name, module in (("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", persistence),
                         ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", dnnlib_util)):
        monkeypatch.setitem(sys.modules, name, module)
    return _reconstruct_persistent_obj, EasyDict


def _persistent(reconstruct, class_name, state):
    class Persistent:  # what @persistent_class's __reduce__ writes: the reconstructor and a meta dict
        def __reduce__(self):
            return (reconstruct, (dict(type="class", version=6, module_src=MODULE_SRC, class_name=class_name,
                                       state=state),))

    return Persistent()


def test_nvlabs_pickle_is_read_without_running_code(tmp_path, monkeypatch, capsys):
    import pickle
    from collections import OrderedDict

    from gandistill.cli import main
    from gandistill.importers import ImportRefused, Placeholder, load_nvlabs_pickle, placeholder_tensors

    monkeypatch.chdir(tmp_path)
    reconstruct, EasyDict = _fake_nvlabs_modules(monkeypatch)
    torch.manual_seed(0)
    fc0 = _persistent(reconstruct, "FullyConnectedLayer", {
        "training": False, "_parameters": OrderedDict(weight=nn.Parameter(torch.randn(8, 8)),
                                                      bias=nn.Parameter(torch.randn(8))),
        "_buffers": OrderedDict(), "_modules": OrderedDict(), "_non_persistent_buffers_set": set()})
    mapping = _persistent(reconstruct, "MappingNetwork", {
        "_parameters": OrderedDict(), "_buffers": OrderedDict(w_avg=torch.randn(8)), "_modules": OrderedDict(fc0=fc0)})
    affine = nn.Linear(8, 4)  # a plain torch module inside: becomes a placeholder too
    g_state = {"z_dim": 8, "w_dim": 8, "img_resolution": 64, "init_kwargs": EasyDict(z_dim=8),
               "_parameters": OrderedDict(), "_buffers": OrderedDict(sizes=torch.tensor([4, 8])),
               "_modules": OrderedDict(mapping=mapping, affine=affine)}
    data = {"G": _persistent(reconstruct, "Generator", g_state), "G_ema": _persistent(reconstruct, "Generator", g_state),
            "training_set_kwargs": EasyDict(resolution=64), "augment_pipe": None}
    with open(tmp_path / "network-snapshot.pkl", "wb") as f:
        pickle.dump(data, f)
    monkeypatch.undo()  # the stand-ins are gone: loading must not need (or import) NVlabs' code
    monkeypatch.chdir(tmp_path)

    loaded = load_nvlabs_pickle(tmp_path / "network-snapshot.pkl")
    assert isinstance(loaded["G_ema"], Placeholder) and loaded["G_ema"].class_name == "Generator"
    tensors = placeholder_tensors(loaded["G_ema"])
    assert sorted(tensors) == ["affine.bias", "affine.weight", "mapping.fc0.bias", "mapping.fc0.weight",
                               "mapping.w_avg", "sizes"]
    assert torch.equal(tensors["affine.weight"], affine.weight.detach())
    assert torch.equal(tensors["mapping.fc0.weight"], fc0.__reduce__()[1][0]["state"]["_parameters"]["weight"])
    assert loaded["training_set_kwargs"] == {"resolution": 64}
    with pytest.raises(ImportRefused, match=r"\(G_ema\): no StyleGAN2 synthesis blocks b4, b8, ... with a mapping "
                                            r"network found"):
        import_checkpoint(tmp_path / "network-snapshot.pkl")
    assert main(["import", str(tmp_path / "network-snapshot.pkl"), "--out", str(tmp_path / "out")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    assert not (tmp_path / "PWNED_MARKER").exists()  # module_src was never executed


class _System:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_MARKER",))


class _Exec:
    def __reduce__(self):
        return (exec, ("open('PWNED_MARKER', 'w').write('x')",))


@pytest.mark.parametrize("evil", [_System, _Exec])
def test_malicious_pickles_run_nothing(tmp_path, monkeypatch, evil):
    import pickle

    monkeypatch.chdir(tmp_path)
    reconstruct, _ = _fake_nvlabs_modules(monkeypatch)
    nested = _persistent(reconstruct, "Generator", {"_parameters": {}, "_modules": {}, "payload": evil()})
    for name, obj in (("top.pkl", {"G_ema": evil()}), ("nested.pkl", {"G_ema": nested})):
        with open(tmp_path / name, "wb") as f:
            pickle.dump(obj, f)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    for name in ("top.pkl", "nested.pkl"):
        with pytest.raises(ValueError, match=r"unsafe pickle \(refused to load (posix\.system|builtins\.exec)"):
            import_checkpoint(tmp_path / name)
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_the_tutorial_script_writes_a_generator_only_checkpoint_that_imports_exactly(tmp_path, tiny_fmnist):
    """examples/tutorial_dcgan.py (the stand-in for a user's checkpoint in docs/importing.md) trains that layout
    and saves it as the tutorial does; the import draws its images."""
    script = load_script("tutorial_dcgan", "examples")
    out = tmp_path / "netG.pth"
    assert script.main(["--steps", "2", "--batch-size", "4", "--ngf", "4", "--ndf", "4", "--nz", "8",
                        "--data-root", str(tiny_fmnist), "--out", str(out)]) == 0
    assert script.main(["--steps", "1", "--data-root", str(tiny_fmnist), "--out", str(out)]) == 1  # no overwrite
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {"epoch", "netG_state_dict"} and "main.0.weight" in saved["netG_state_dict"]
    imported = import_checkpoint(out)
    cfg = imported.generator.config
    assert imported.discriminator is None
    assert (cfg.resolution, cfg.channels, cfg.z_dim, cfg.base_channels, cfg.image_bias) == (64, 3, 8, 4, False)
    g = script.TutorialGenerator(8, 4)
    g.load_state_dict(saved["netG_state_dict"])
    z = torch.randn(5, 8)
    with torch.no_grad():
        assert (imported.generator(z) - g.eval()(z[:, :, None, None])).abs().max() <= 1e-5


def test_family_on_a_known_format_suggests_dropping_it(tmp_path, capsys):
    from gandistill.cli import main

    save_tutorial(tmp_path / "netG.pth", 32, 1, nz=100, ngf=8, with_d=False, wrap="bare")
    assert main(["import", str(tmp_path / "netG.pth"), "--family", "dcgan", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "it is a pytorch-dcgan checkpoint: drop --family (and --config) to import it as one" in err
