"""kill -9 in the middle of a distillation, then --resume: the run ends where an uninterrupted one ends."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gandistill.checkpoint import from_pretrained, load_state, save_gan

from .conftest import tiny_discriminator, tiny_generator

ARGS = ["--data", "synthetic", "--batch-size", "8", "--width", "0.5", "--log-every", "5", "--sample-every", "0",
        "--checkpoint-every", "1", "--steps", "40"]


def _distill(teacher, out, *extra, wait=True):
    cmd = [sys.executable, "-m", "gandistill", "distill", "--teacher", str(teacher), "--out", str(out), *ARGS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_step", [7, 23])
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, kill_after_step):
    teacher = tmp_path / "teacher"
    save_gan(tiny_generator("dcgan"), tiny_discriminator("dcgan"), teacher)
    assert _distill(teacher, tmp_path / "full").returncode == 0

    proc = _distill(teacher, tmp_path / "crashed", wait=False)
    state = tmp_path / "crashed" / "state.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if load_state(state)["step"] >= kill_after_step:
                break
        except (FileNotFoundError, ValueError):
            pass  # not written yet; a torn file would keep failing and the assert below would catch it
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    step = load_state(state)["step"]  # never truncated: the atomic rename leaves the old or the new file
    assert kill_after_step <= step < 40
    assert not (tmp_path / "crashed" / "student").exists()

    resumed = _distill(teacher, tmp_path / "crashed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = from_pretrained(tmp_path / "full" / "student").state_dict()
    b = from_pretrained(tmp_path / "crashed" / "student").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    leftovers = [p.name for p in (tmp_path / "crashed").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []  # a temp file torn by the kill is cleaned up on resume
