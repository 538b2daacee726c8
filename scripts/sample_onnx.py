#!/usr/bin/env python3
"""Draw a PNG grid from a generator exported with ``gandistill export --format onnx``.

Needs only onnxruntime, numpy and pillow (no torch, no gandistill): the proof that an export stands alone.

    python scripts/sample_onnx.py student.onnx --num 64 --seed 0 --out grid.png

z is ``numpy.random.default_rng(seed).standard_normal((num, z_dim), dtype=float32)``. torch draws different
numbers for the same seed, so this grid is not the one ``gandistill sample --seed`` draws.
Works with float exports (img [N, C, H, W] in [-1, 1]), --quantize int8 exports (the same contract) and
--uint8 exports (img uint8 [N, H, W, C]).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

try:
    import numpy as np
    import onnxruntime as ort
    from PIL import Image
except ImportError as e:
    sys.exit(f"sample_onnx: error: {e}; install with: pip install onnxruntime numpy pillow")


def load(path: str, threads: int = 0) -> ort.InferenceSession:
    """A CPU session with the settings gandistill's own sessions use (gandistill.onnx_runtime.session_options, and
    docs/performance.md for the measurements): every graph optimisation (level 3 adds the NCHWc layout of
    onnxruntime's fast convolution kernels), sequential execution, one inter-op thread; ``threads`` intra-op
    threads (0: onnxruntime's default, one per physical core)."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: empty file")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors share no public base class
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: corrupt or not a valid ONNX model ({first[:200]})") from None


def generate(session: ort.InferenceSession, num: int, seed: int, batch_size: int) -> np.ndarray:
    """uint8 images [num, H, W, C]."""
    z_input = session.get_inputs()[0]
    z_dim = z_input.shape[1]
    if not isinstance(z_dim, int):
        raise ValueError(f"input {z_input.name} has no fixed z dimension ({z_input.shape})")
    z = np.random.default_rng(seed).standard_normal((num, z_dim), dtype=np.float32)
    chunks = []
    for start in range(0, num, batch_size):
        try:
            out = session.run(None, {z_input.name: z[start:start + batch_size]})[0]
        except Exception as e:  # noqa: BLE001 - e.g. an ONNX model that is not a gandistill generator
            raise ValueError(f"running the model failed: {str(e).strip()[:200]}") from None
        if out.ndim != 4:
            raise ValueError(f"expected images [N, C, H, W] or [N, H, W, C], got shape {list(out.shape)}")
        if out.dtype == np.uint8:  # --uint8 export: already [N, H, W, C]
            chunks.append(out)
        else:  # [N, C, H, W] in [-1, 1], rounded as gandistill does
            pixels = np.clip(np.round((out.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
            chunks.append(pixels.transpose(0, 2, 3, 1))
    return np.concatenate(chunks)


def grid(images: np.ndarray, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """uint8 [N, H, W, C] -> one uint8 [rows*(H+p)+p, nrow*(W+p)+p, C] image with dark padding."""
    n, h, w, c = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    out = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        out[y:y + h, x:x + w] = images[i]
    return out


def save_png(array: np.ndarray, path: str, scale: int = 1) -> None:
    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".grid.", suffix=".png", dir=directory)
    os.close(fd)
    try:
        image.save(tmp, format="PNG")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private
        os.replace(tmp, path)  # never a half-written grid under the final name
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an .onnx file exported by gandistill")
    parser.add_argument("--num", type=int, default=64, help="images in the grid (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of z (default: %(default)s)")
    parser.add_argument("--out", default="grid.png", help="PNG file to write (default: %(default)s)")
    parser.add_argument("--nrow", type=int, default=None, help="images per row (default: square-ish)")
    parser.add_argument("--scale", type=int, default=1, help="integer upscaling of the PNG (default: 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per onnxruntime call")
    parser.add_argument("--threads", type=int, default=0,
                        help="onnxruntime intra-op threads (default: 0, one per physical core)")
    args = parser.parse_args(argv)
    for name in ("num", "scale", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.nrow is not None and args.nrow < 1:
        parser.error("--nrow must be >= 1")
    try:
        images = generate(load(args.model, args.threads), args.num, args.seed, args.batch_size)
        save_png(grid(images, args.nrow), args.out, args.scale)
    except (ValueError, OSError) as e:
        print(f"sample_onnx: error: {e}", file=sys.stderr)
        return 1
    n, h, w, c = images.shape
    print(f"wrote {args.out}: {n} images of {h}x{w}x{c} from {args.model} (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
