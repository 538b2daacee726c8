#!/usr/bin/env python3
"""Float vs int8 ONNX exports of the same generator: size, params, MACs and onnxruntime img/s, interleaved.

    python scripts/bench_int8.py runs/w025.onnx runs/w025-int8.onnx --threads 2 --batch-sizes 1 64

Both sessions live in one process and are timed in alternating rounds (float, int8, float, int8, ...), so
machine load drifts over both alike; each cell is the median over rounds of one round's img/s. --ops adds
onnxruntime's own per-node timing at the largest batch size: which operators the time goes to in each file.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

from gandistill.onnx_generator import OnnxGenerator


def session(path: str, threads: int, profile_dir: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    if profile_dir:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(profile_dir, os.path.basename(path))
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def interleaved(sessions: dict, z: np.ndarray, rounds: int, seconds: float, warmup: int = 3) -> dict:
    """name -> median img/s over ``rounds`` alternating rounds of ``seconds`` each."""
    feeds = {name: {s.get_inputs()[0].name: z} for name, s in sessions.items()}
    for name, s in sessions.items():
        for _ in range(warmup):
            s.run(None, feeds[name])
    rates = collections.defaultdict(list)
    for _ in range(rounds):
        for name, s in sessions.items():
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                s.run(None, feeds[name])
                calls += 1
            rates[name].append(calls * len(z) / (time.perf_counter() - start))
    return {name: float(np.median(r)) for name, r in rates.items()}


def op_times(path: str, threads: int, z: np.ndarray, runs: int = 20) -> dict:
    """operator type -> mean microseconds per run, from onnxruntime's profiler (optimised graph's nodes)."""
    with tempfile.TemporaryDirectory() as tmp:
        s = session(path, threads, tmp)
        feed = {s.get_inputs()[0].name: z}
        for _ in range(3):
            s.run(None, feed)
        s.end_profiling()
        s = session(path, threads, tmp)
        for _ in range(runs + 1):
            s.run(None, feed)
        with open(s.end_profiling()) as f:
            events = json.load(f)
    totals = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            totals[e["args"]["op_name"]] += e["dur"]
    return {op: us / (runs + 1) for op, us in totals.most_common()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("float_onnx", help="the float export")
    parser.add_argument("int8_onnx", help="its --quantize int8 export")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default: 2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], metavar="N")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per batch size (default: 7)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round (default: 1.0)")
    parser.add_argument("--ops", action="store_true", help="also print per-operator time at the largest batch")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    paths = {"float": args.float_onnx, "int8": args.int8_onnx}
    try:
        info = {name: OnnxGenerator(p) for name, p in paths.items()}
    except (ValueError, OSError) as e:
        print(f"bench_int8: error: {e}", file=sys.stderr)
        return 1
    if info["float"].config != info["int8"].config:
        print("bench_int8: error: the two files export different architectures", file=sys.stderr)
        return 1
    z_dim = info["float"].z_dim
    sessions = {name: session(p, args.threads) for name, p in paths.items()}
    rng = np.random.default_rng(0)
    result = {"threads": args.threads, "rounds": args.rounds, "seconds": args.seconds,
              "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider", "cpus": os.cpu_count(),
              "load_avg_before": os.getloadavg(), "files": {}, "img_s": {}}
    for name, g in info.items():
        result["files"][name] = {"path": paths[name], "bytes": os.path.getsize(paths[name]),
                                 "params": g.num_params, "macs": g.macs, "quantize": g.quantize}
    for n in args.batch_sizes:
        z = rng.standard_normal((n, z_dim), dtype=np.float32)
        result["img_s"][n] = interleaved(sessions, z, args.rounds, args.seconds)
    result["load_avg_after"] = os.getloadavg()
    if args.ops:
        z = rng.standard_normal((max(args.batch_sizes), z_dim), dtype=np.float32)
        result["op_us"] = {name: op_times(p, args.threads, z) for name, p in paths.items()}

    f, q = result["files"]["float"], result["files"]["int8"]
    print(f"{info['float'].family} w{info['float'].config.width:g}: params {f['params']:,}, MACs {f['macs']:,}; "
          f"{result['runtime']}, {args.threads} threads, {args.rounds} interleaved rounds of {args.seconds:g} s; "
          f"load average {result['load_avg_before'][0]:.2f} -> {result['load_avg_after'][0]:.2f} "
          f"on {result['cpus']} CPUs")
    print("| file | bytes | " + " | ".join(f"img/s batch {n}" for n in args.batch_sizes) + " |")
    print("|---|---:|" + "---:|" * len(args.batch_sizes))
    for name in ("float", "int8"):
        print(f"| {paths[name]} | {result['files'][name]['bytes']:,} | "
              + " | ".join(f"{result['img_s'][n][name]:,.0f}" for n in args.batch_sizes) + " |")
    print(f"| int8 / float | {q['bytes'] / f['bytes']:.2f}x | "
          + " | ".join(f"{result['img_s'][n]['int8'] / result['img_s'][n]['float']:.2f}x" for n in args.batch_sizes)
          + " |")
    if args.ops:
        for name, ops in result["op_us"].items():
            print(f"{name} at batch {max(args.batch_sizes)}, us per run by operator: "
                  + ", ".join(f"{op} {us:,.0f}" for op, us in ops.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
