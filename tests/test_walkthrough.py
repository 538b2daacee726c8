"""The README's "compress your own DCGAN checkpoint" walkthrough, end to end, on a generated tutorial checkpoint."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from gandistill.checkpoint import from_pretrained
from gandistill.cli import main

from .test_importers import save_tutorial

REPO = Path(__file__).resolve().parents[1]


def test_compress_your_own_dcgan_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    # a checkpoint saved the way the PyTorch DCGAN tutorial does: 64x64 RGB, small width, generator only
    g, _ = save_tutorial(tmp_path / "netG.pth", 64, 3, nz=100, ngf=16, with_d=False, wrap="bare")

    assert main(["import", "netG.pth", "--out", "teachers/my-dcgan"]) == 0
    assert "format:  pytorch-dcgan" in capsys.readouterr().out
    assert main(["info", "teachers/my-dcgan"]) == 0
    assert "resolution=64, channels=3, z_dim=100, base_channels=16" in capsys.readouterr().out

    assert main(["distill", "--teacher", "teachers/my-dcgan", "--data", "none", "--width", "0.5", "--steps", "3",
                 "--batch-size", "4", "--sample-every", "0", "--out", "runs/my-w05"]) == 0
    assert "disc_feature and disc_kl are off" in capsys.readouterr().err

    assert main(["eval", "teachers/my-dcgan", "runs/my-w05/student", "--reference", "teacher", "--metrics",
                 "fid,kid", "--num-samples", "20", "--paired", "8", "--batch-size", "10",
                 "--out", "eval.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "runs/my-w05/student: fid20[inception,vs-teacher]" in out and "PSNR" in out
    records = [json.loads(line) for line in Path("eval.jsonl").read_text().splitlines()]
    assert records[1]["protocol"]["extractor"] == "inception" and records[1]["paired"]["num"] == 8

    assert main(["export", "runs/my-w05/student", "--format", "onnx", "--out", "my-w05.onnx"]) == 0
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "sample_onnx.py"), "my-w05.onnx", "--num", "4",
                           "--seed", "0", "--out", "grid.png"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "4 images of 64x64x3" in proc.stdout and Path("grid.png").is_file()

    # the imported teacher still draws the original module's images
    z = torch.from_numpy(np.random.RandomState(0).randn(3, 100)).float()
    with torch.no_grad():
        assert (from_pretrained("teachers/my-dcgan")(z) - g(z[:, :, None, None])).abs().max() <= 1e-5
