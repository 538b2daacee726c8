"""The stylegan2 family against the original code: NVlabs pickles and rosinality checkpoints import with parity.

tests/fixtures/stylegan2/*.safetensors hold tensors made by running the original code outside this project
(NVlabs stylegan2-ada-pytorch d72cc7d training/networks.py; rosinality stylegan2-pytorch bef283a model.py with
its channel table scaled down, CPU paths of its ops), each with its biases, noise strengths and w_avg randomised
so that every term shows: the networks' state dicts, z, and the images and discriminator logits the original
drew for that z with fixed noise (NVlabs noise_mode='const', rosinality randomize_noise=False). The files a user
has are rebuilt here from those tensors in each format's layout: an NVlabs pickle of persistent objects (with a
module_src that must never run) and a rosinality torch.save dict with optimiser states and argparse args.
"""
import argparse
import json
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from gandistill.checkpoint import from_pretrained, load_gan
from gandistill.cli import main
from gandistill.importers import ImportRefused, import_checkpoint
from gandistill.students import make_student

from .test_importers import _fake_nvlabs_modules, _persistent

FIXTURES = Path(__file__).parent / "fixtures" / "stylegan2"
TOL = 1e-4  # the bound on [-1, 1] images; measured: <= 8e-7


def _fixture(name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = FIXTURES / f"{name}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return load_file(str(path)), meta


# --- an NVlabs pickle, rebuilt from the fixture's tensors in the layout persistence.py writes --------------------

_BUFFERS = ("w_avg", "noise_const", "resample_filter")


def _attributes(kind: str, path: str, gk: dict) -> dict:
    """The pickled attributes the importer reads (names and values as in a real snapshot; checked against one)."""
    last = path.rsplit(".", 1)[-1]
    if path == "":
        return {"c_dim": 0, "img_resolution": gk["img_resolution"]}
    if kind == "G":
        if path == "mapping":
            return {"num_layers": gk["mapping_kwargs"]["num_layers"], "w_avg_beta": 0.995}
        if path.startswith("mapping.fc"):
            return {"activation": "lrelu", "bias_gain": 0.01}
        if last.startswith("b") and last[1:].isdigit():
            return {"architecture": "skip", "use_fp16": False}
        if last in ("conv0", "conv1"):
            return {"use_noise": True, "activation": "lrelu", "conv_clamp": gk["synthesis_kwargs"]["conv_clamp"]}
        if last == "torgb":
            return {"conv_clamp": gk["synthesis_kwargs"]["conv_clamp"]}
        return {}
    if path == "b4":
        return {"architecture": "resnet", "cmap_dim": 0}
    if path == "b4.mbstd":
        return {"group_size": 4, "num_channels": 1}
    if last.startswith("b") and last[1:].isdigit():
        return {"architecture": "resnet"}
    if last in ("conv0", "conv1", "fromrgb", "conv"):
        return {"activation": "lrelu", "conv_clamp": gk.get("conv_clamp", gk.get("synthesis_kwargs", {})
                                                           .get("conv_clamp"))}
    return {}


def _nvlabs_tree(reconstruct, kind: str, tensors: dict[str, torch.Tensor], gk: dict, class_names: dict,
                 extra_paths=(), top_extra=None):
    """Nested persistent objects: each module's state holds _parameters, _buffers, _modules and its attributes."""
    paths = {""} | set(extra_paths)
    for name in tensors:
        parts = name.split(".")[:-1]
        paths |= {".".join(parts[:i]) for i in range(len(parts) + 1)}

    def build(path: str):
        prefix = f"{path}." if path else ""
        params, buffers, children = OrderedDict(), OrderedDict(), OrderedDict()
        for name, t in tensors.items():
            rest = name[len(prefix):] if name.startswith(prefix) else None
            if rest is not None and "." not in rest:
                if rest in _BUFFERS:
                    buffers[rest] = t.clone()
                else:
                    params[rest] = nn.Parameter(t.clone(), requires_grad=False)
        for child in sorted(p for p in paths if p.startswith(prefix) and p != path and "." not in p[len(prefix):]):
            children[child[len(prefix):]] = build(child)
        state = {"training": False, "_parameters": params, "_buffers": buffers, "_modules": children,
                 "_init_kwargs": gk if path == "" else {}, **_attributes(kind, path, gk),
                 **((top_extra or {}) if path == "" else {})}
        return _persistent(reconstruct, class_names.get(path, "Module"), state)

    return build("")


def _write_nvlabs_pickle(path: Path, monkeypatch, t: dict, meta: dict, *, g_override=None, top_extra=None,
                         with_d: bool = True):
    reconstruct, easydict = _fake_nvlabs_modules(monkeypatch)
    gk, dk = json.loads(meta["G_init_kwargs"]), json.loads(meta["D_init_kwargs"])
    g_tensors = {k[2:]: v for k, v in t.items() if k.startswith("G.")}
    d_tensors = {k[2:]: v for k, v in t.items() if k.startswith("D.")}
    if g_override:
        g_tensors = g_override(g_tensors)
    g = _nvlabs_tree(reconstruct, "G", g_tensors, gk, {"": "Generator"}, top_extra=top_extra)
    snapshot = {"G_ema": g, "G": g, "augment_pipe": None, "training_set_kwargs": easydict(resolution=32)}
    if with_d:
        snapshot["D"] = _nvlabs_tree(reconstruct, "D", d_tensors, dk, {"": "Discriminator"}, extra_paths=("b4.mbstd",))
    with open(path, "wb") as f:
        pickle.dump(snapshot, f)
    monkeypatch.undo()  # the stand-ins are gone: loading must not need NVlabs' code


def _images(generator, z, psi=1.0, cutoff=None, noise="const"):
    generator.set_truncation(psi, cutoff)
    generator.set_noise_mode(noise)
    with torch.no_grad():
        return generator(z)


@pytest.mark.parametrize("name", ["nvlabs_rgb32", "nvlabs_gray16_clamp"])
def test_nvlabs_pickle_draws_the_original_images(name, tmp_path, monkeypatch):
    t, meta = _fixture(name)
    monkeypatch.chdir(tmp_path)
    _write_nvlabs_pickle(tmp_path / "network-snapshot-000100.pkl", monkeypatch, t, meta)
    imported = import_checkpoint(tmp_path / "network-snapshot-000100.pkl")
    g, d = imported.generator, imported.discriminator
    assert imported.format == "nvlabs-pkl" and imported.sources == {"generator": "G_ema", "discriminator": "D"}
    z, cutoff = t["z"], int(meta["truncation_cutoff"])
    assert (_images(g, z) - t["img_psi1"]).abs().max() <= TOL
    assert (_images(g, z, 0.7) - t["img_psi0.7"]).abs().max() <= TOL
    assert (_images(g, z, 0.7, cutoff) - t["img_psi0.7_cutoff"]).abs().max() <= TOL
    assert (_images(g, z, noise="none") - t["img_noise_none"]).abs().max() <= TOL
    torch.testing.assert_close(g.mapping(z), t["ws"], rtol=0, atol=TOL)
    with torch.no_grad():
        assert (d(t["img_psi1"]) - t["d_logits"].flatten()).abs().max() <= TOL
    gk = json.loads(meta["G_init_kwargs"])
    assert (g.config.resolution, g.config.channels, g.config.z_dim, g.config.w_dim, g.config.conv_clamp) == (
        gk["img_resolution"], gk["img_channels"], gk["z_dim"], gk["w_dim"], gk["synthesis_kwargs"]["conv_clamp"])
    assert (g.config.channel_base, g.config.channel_max) == (gk["synthesis_kwargs"]["channel_base"],
                                                           gk["synthesis_kwargs"]["channel_max"])
    assert not (tmp_path / "PWNED_MARKER").exists()  # the pickle's module_src was never run


def test_cli_import_with_no_flags_writes_a_gan_directory_that_draws_the_same(tmp_path, monkeypatch, capsys):
    t, meta = _fixture("nvlabs_rgb32")
    monkeypatch.chdir(tmp_path)
    _write_nvlabs_pickle(tmp_path / "snap.pkl", monkeypatch, t, meta)
    assert main(["import", str(tmp_path / "snap.pkl"), "--out", str(tmp_path / "gan")]) == 0
    out = capsys.readouterr().out
    assert "nvlabs-pkl" in out and "every tensor of that state dict placed" in out
    g, d = load_gan(tmp_path / "gan")
    assert g.family == d.family == "stylegan2"
    assert (_images(g, t["z"]) - t["img_psi1"]).abs().max() <= TOL
    assert (_images(g, t["z"], 0.7) - t["img_psi0.7"]).abs().max() <= TOL
    assert not (tmp_path / "PWNED_MARKER").exists()


def _rosinality_file(path: Path, t: dict, *, latent_avg: bool = False, extra: dict | None = None) -> None:
    g_ema = {k.removeprefix("g_ema."): v for k, v in t.items() if k.startswith("g_ema.")}
    d = {k.removeprefix("d."): v for k, v in t.items() if k.startswith("d.")}
    g_ema.update(extra or {})
    optim = torch.optim.Adam([nn.Parameter(torch.zeros(3))], lr=0.002)
    ckpt = {"g": g_ema, "d": d, "g_ema": g_ema, "g_optim": optim.state_dict(), "d_optim": optim.state_dict(),
            "args": argparse.Namespace(size=32, latent=32, n_mlp=3, channel_multiplier=2, r1=10.0, path="lmdb")}
    if latent_avg:
        ckpt["latent_avg"] = t["w_avg_4096_seed0"]
    torch.save(ckpt, path)


@pytest.mark.parametrize("latent_avg", [False, True])
def test_rosinality_checkpoint_draws_the_original_images(tmp_path, latent_avg):
    t, _ = _fixture("rosinality_rgb32")
    _rosinality_file(tmp_path / "550000.pt", t, latent_avg=latent_avg)
    imported = import_checkpoint(tmp_path / "550000.pt")
    g, d = imported.generator, imported.discriminator
    assert imported.format == "rosinality-stylegan2" and d is not None
    assert g.config.channel_base == 1536 and g.config.channel_max == 64  # the scaled table, from the tensors
    # no w_avg in rosinality: the file's latent_avg, else the mean w of 4096 z with seed 0 (the fixture's centre)
    torch.testing.assert_close(g.mapping.w_avg, t["w_avg_4096_seed0"], rtol=0, atol=1e-5)
    assert any(("latent_avg" in n) == latent_avg and "w_avg" in n for n in imported.notes)
    assert (_images(g, t["z"]) - t["img_psi1"]).abs().max() <= TOL
    assert (_images(g, t["z"], 0.7) - t["img_psi0.7"]).abs().max() <= TOL
    with torch.no_grad():
        assert (d(t["img_psi1"]) - t["d_logits"].flatten()).abs().max() <= TOL


def test_a_tensor_that_cannot_be_placed_is_refused(tmp_path, capsys):
    t, _ = _fixture("rosinality_rgb32")
    _rosinality_file(tmp_path / "extra.pt", t, extra={"convs.0.conv.extra_scale": torch.ones(1)})
    with pytest.raises(ImportRefused, match="cannot place convs.0.conv.extra_scale"):
        import_checkpoint(tmp_path / "extra.pt")
    assert main(["import", str(tmp_path / "extra.pt"), "--out", str(tmp_path / "out")]) != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    blur = {"convs.0.conv.blur.kernel": torch.ones(4, 4)}  # another resampling filter: other images
    _rosinality_file(tmp_path / "blur.pt", t, extra=blur)
    with pytest.raises(ImportRefused, match=r"not the \[1,3,3,1\] FIR filter"):
        import_checkpoint(tmp_path / "blur.pt")


def test_nvlabs_layouts_the_family_does_not_hold_are_refused(tmp_path, monkeypatch):
    t, meta = _fixture("nvlabs_gray16_clamp")
    cases = {
        "stylegan3.pkl": (dict(g_override=lambda g: {**g, "synthesis.input.freqs": torch.randn(4, 2)}), "StyleGAN3"),
        "cond.pkl": (dict(top_extra={"c_dim": 10}), "conditional model"),
        "missing.pkl": (dict(g_override=lambda g: {k: v for k, v in g.items() if k != "mapping.fc2.bias"}),
                        "missing: mapping.fc2.bias"),
        "filter.pkl": (dict(g_override=lambda g: {**g, "synthesis.b8.resample_filter": torch.ones(4, 4) / 16}),
                       r"not the \[1,3,3,1\] FIR filter"),
    }
    for name, (kwargs, message) in cases.items():
        with monkeypatch.context() as m:
            _write_nvlabs_pickle(tmp_path / name, m, t, meta, **kwargs)
        with pytest.raises(ImportRefused, match=message):
            import_checkpoint(tmp_path / name)


def test_imported_teacher_makes_students_whose_channels_are_the_teachers(tmp_path):
    t, _ = _fixture("rosinality_rgb32")
    _rosinality_file(tmp_path / "r.pt", t)
    teacher = import_checkpoint(tmp_path / "r.pt").generator.eval()
    student = make_student(teacher, 0.5, init="l1").eval()
    kept = student.lineage["kept_channels"]
    s_state, t_state = student.state_dict(), teacher.state_dict()
    modules_t, modules_s = dict(teacher.named_modules()), dict(student.named_modules())
    # the oracle: every student tensor is the teacher's, index_select-ed by the kept channels of each group it is in
    slices: dict[str, list] = {}
    for group in teacher.channel_groups():
        for name, dim in group.members:
            slices.setdefault(name, []).append((dim, torch.tensor(kept[group.name])))
    assert len(kept["b32.conv1"]) == 24 and len(kept["b4.const"]) == 32
    for name, tensor in t_state.items():
        expected = tensor
        for dim, idx in slices.get(name, []):
            expected = expected.index_select(dim, idx)
        module = name.rsplit(".", 1)[0]
        if name.endswith("torgb.weight"):  # equalised lr: the stored weight is rescaled to keep weight * scale
            expected = expected * (modules_t[module].scale / modules_s[module].scale)
        torch.testing.assert_close(s_state[name], expected, rtol=1e-6, atol=0, msg=name)
    for name in ("mapping.fc0.weight", "mapping.fc2.bias", "mapping.w_avg"):  # the mapping network is kept whole
        assert torch.equal(s_state[name], t_state[name])
    assert s_state["synthesis.b32.conv1.weight"].shape == (24, 24, 3, 3)
    z = torch.randn(4, teacher.z_dim)
    with torch.no_grad():
        assert torch.isfinite(student(z)).all()
        assert (make_student(teacher, 1.0).eval()(z) - teacher(z)).abs().max() == 0


def test_folders_saved_before_the_faithful_family_load_as_stylegan2_lite():
    """pretrained/stylegan2-fmnist was saved in format 1, where 'stylegan2' named the StyleGAN2-like family."""
    root = Path(__file__).resolve().parents[1] / "pretrained"
    meta = json.loads((root / "stylegan2-fmnist" / "generator" / "config.json").read_text())
    assert meta["gandistill_format"] == 1 and meta["family"] == "stylegan2"
    teacher = from_pretrained(root / "stylegan2-fmnist")
    student = from_pretrained(root / "stylegan2-fmnist-student-w0.25")
    assert teacher.family == student.family == "stylegan2-lite"
    assert student.lineage["teacher"]["family"] == "stylegan2-lite"


def test_export_fixes_truncation_and_noise_and_records_them(tmp_path):
    from gandistill.export import export, read_metadata

    t, _ = _fixture("rosinality_rgb32")
    _rosinality_file(tmp_path / "r.pt", t)
    teacher = import_checkpoint(tmp_path / "r.pt").generator.eval()
    result = export(teacher, "torchscript", tmp_path / "g.pt", truncation_psi=0.7, noise_mode="none", seed=0)
    meta = read_metadata(tmp_path / "g.pt")
    assert meta["sampling"] == {"truncation_psi": 0.7, "truncation_cutoff": None, "noise_mode": "none"}
    assert meta["family"] == "stylegan2" and meta["gandistill_format"] == 2
    assert result.record["check"]["max_abs_diff"] <= TOL
    assert teacher.truncation_psi == 1.0 and teacher.noise_mode == "const"  # the caller's module is untouched
    scripted = torch.jit.load(str(tmp_path / "g.pt"))
    with torch.no_grad():
        assert (scripted(t["z"]) - _images(teacher, t["z"], 0.7, noise="none")).abs().max() <= TOL
        assert (scripted(t["z"]) - t["img_psi0.7"]).abs().max() > 1e-3  # noise none differs from the const image
    with pytest.raises(ValueError, match="apply to stylegan2 generators"):
        export(_dcgan(), "torchscript", tmp_path / "d.pt", truncation_psi=0.5)
    with pytest.raises(ValueError, match="noise mode 'random'"):
        export(teacher, "torchscript", tmp_path / "x.pt", noise_mode="random")


def _dcgan():
    from gandistill.models import build_generator

    return build_generator("dcgan", base_channels=4)


def test_compress_your_own_stylegan2_walkthrough(tmp_path, monkeypatch, capsys):
    """The README's "compress your StyleGAN2" commands on a generator-only NVlabs pickle (1 channel, 16 px)."""
    import subprocess
    import sys

    t, meta = _fixture("nvlabs_gray16_clamp")
    _write_nvlabs_pickle(tmp_path / "network-snapshot.pkl", monkeypatch, t, meta, with_d=False)  # undoes monkeypatch
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["import", "network-snapshot.pkl", "--out", "teachers/my-sg2"]) == 0
    assert "discriminator: none in the file" in capsys.readouterr().out
    teacher = from_pretrained("teachers/my-sg2")
    assert (_images(teacher, t["z"], 0.7) - t["img_psi0.7"]).abs().max() <= TOL
    assert main(["distill", "--teacher", "teachers/my-sg2", "--data", "none", "--width", "0.5", "--steps", "8",
                 "--batch-size", "4", "--sample-every", "0", "--out", "runs/my-w05"]) == 0
    assert "disc_feature and disc_kl are off" in capsys.readouterr().err
    student = from_pretrained("runs/my-w05/student")
    assert teacher.synthesis.b16.conv1.weight.shape[0] == 16 and student.synthesis.b16.conv1.weight.shape[0] == 8
    torch.testing.assert_close(student.mapping.fc0.weight, teacher.mapping.fc0.weight, rtol=0, atol=0.1)
    assert main(["eval", "teachers/my-sg2", "runs/my-w05/student", "--reference", "teacher", "--metrics", "fid,kid",
                 "--num-samples", "20", "--paired", "8", "--batch-size", "10", "--out", "eval.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "runs/my-w05/student: fid20[fmnist-cnn,vs-teacher]" in out and "PSNR" in out
    assert main(["export", "runs/my-w05/student", "--format", "onnx", "--truncation-psi", "0.7",
                 "--out", "my-w05.onnx"]) == 0
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "sample_onnx.py"),
                           "my-w05.onnx", "--num", "4", "--seed", "0", "--out", "grid.png"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "4 images of 16x16x1" in proc.stdout and Path("grid.png").is_file()


def test_every_distillation_term_works_on_a_stylegan2_student(tmp_path):
    from gandistill.checkpoint import save_gan
    from gandistill.train import distill

    from .conftest import tiny_discriminator, tiny_generator
    from .test_metrics import tiny_classifier

    teacher = tmp_path / "teacher"
    save_gan(tiny_generator("stylegan2"), tiny_discriminator("stylegan2"), teacher)
    result = distill(teacher=str(teacher), out=str(tmp_path / "d"), width=0.5, steps=3, data="synthetic",
                     batch_size=8, sample_every=0, log_every=1, perceptual=1.0, class_kl=0.5,
                     classifier=str(tiny_classifier(tmp_path / "cls")))
    assert result.status == "completed"
    record = json.loads((tmp_path / "d" / "log.jsonl").read_text().splitlines()[-1])
    terms = ("pixel", "feature", "disc_feature", "disc_kl", "perceptual", "class_kl", "adversarial", "d_loss")
    assert all(term in record and torch.isfinite(torch.tensor(record[term])) for term in terms), record
    student = from_pretrained(tmp_path / "d" / "student")
    assert student.family == "stylegan2" and student.lineage["teacher"]["family"] == "stylegan2"


def test_config_f_at_1024_has_the_published_sizes():
    """StyleGAN2 config-f (FFHQ 1024): NVlabs' training log lists G 30,370,060 and D 29,012,513 parameters, 18 ws."""
    from gandistill.models import build_discriminator, build_generator

    sizes = dict(resolution=1024, channels=3, z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768,
                 channel_max=512)
    with torch.device("meta"):  # shapes only, nothing allocated
        g, d = build_generator("stylegan2", **sizes), build_discriminator("stylegan2", **sizes)
    assert sum(p.numel() for p in g.parameters()) == 30_370_060
    assert sum(p.numel() for p in d.parameters()) == 29_012_513
    assert g.num_ws == 18


def test_an_unsafe_torch_reads_no_checkpoint(tmp_path, monkeypatch):
    """torch < 2.6 runs code from crafted files even with weights_only=True (CVE-2025-32434): nothing is read."""
    t, _ = _fixture("rosinality_rgb32")
    _rosinality_file(tmp_path / "r.pt", t)
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(RuntimeError, match="CVE-2025-32434"):
        import_checkpoint(tmp_path / "r.pt")


@pytest.mark.slow
def test_demo_takes_an_imported_stylegan2_teacher(tmp_path, monkeypatch, capsys):
    """`gandistill demo --teacher DIR` on a StyleGAN2 imported from a rosinality checkpoint: distill, evaluate,
    profile, ONNX export and report, on a tiny preset (the extractor's weights live in pretrained/)."""
    t, _ = _fixture("rosinality_rgb32")
    _rosinality_file(tmp_path / "r.pt", t)
    assert main(["import", str(tmp_path / "r.pt"), "--out", str(tmp_path / "teacher")]) == 0
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    out = tmp_path / "demo"
    assert main(["demo", "--teacher", str(tmp_path / "teacher"), "--out", str(out), "--steps", "2", "--batch-size",
                 "8", "--data", "none", "--dataset", "synthetic", "--num-samples", "40", "--paired", "8",
                 "--export-format", "onnx", "--no-verbose"]) == 0
    assert "| `student-w0.25`" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert [row["model"] for row in report["rows"]] == ["teacher", "student-w0.25"]
    assert (out / "student.onnx").is_file()
    assert from_pretrained(out / "distill" / "student").family == "stylegan2"
