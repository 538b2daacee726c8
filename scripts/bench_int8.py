#!/usr/bin/env python3
"""Float vs int8 ONNX exports of the same generator: size, params, MACs and onnxruntime img/s, interleaved.

    python scripts/bench_int8.py runs/w025.onnx runs/w025-int8.onnx --threads 2 --batch-sizes 1 64

Both sessions live in one process, with gandistill's session settings (gandistill.onnx_runtime), and are timed
by gandistill.timing in alternating rounds with a settle pause between turns (each session's threads spin after
a run), so machine load drifts over both alike; each cell is the median over rounds of one round's img/s.
`gandistill profile` times the same way, PyTorch modules included. --ops adds onnxruntime's own per-node
timing at the largest batch size: which operators the time goes to in each file; --layers the same per node;
--settings times each file under gandistill's session settings against the alternatives (no layout
optimisation, no spinning), the measurement behind them (docs/performance.md).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

from gandistill.onnx_generator import OnnxGenerator
from gandistill.onnx_runtime import session_options
from gandistill.timing import compare


def session(path: str, threads: int, profile_dir: str | None = None) -> ort.InferenceSession:
    options = session_options(threads)
    if profile_dir:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(profile_dir, os.path.basename(path))
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def interleaved(sessions: dict, z: np.ndarray, rounds: int, seconds: float, warmup: int = 3) -> dict:
    """name -> median img/s over ``rounds`` alternating rounds of about ``seconds`` each (gandistill.timing)."""
    feeds = {name: {s.get_inputs()[0].name: z} for name, s in sessions.items()}
    calls = {name: (lambda s=s, feed=feeds[name]: s.run(None, feed)) for name, s in sessions.items()}
    start = time.perf_counter()
    for call in calls.values():
        call()
    runs = max(1, int(seconds / max((time.perf_counter() - start) / len(calls), 1e-6)))
    timed = compare(calls, rounds=rounds, runs=runs, warmup=warmup)
    return {name: len(z) / t["s"] for name, t in timed.items()}


SETTINGS = {  # label -> (graph optimisation level name, allow spinning)
    "ORT_ENABLE_ALL (gandistill)": ("ORT_ENABLE_ALL", "1"),
    "ORT_ENABLE_EXTENDED": ("ORT_ENABLE_EXTENDED", "1"),
    "ORT_ENABLE_ALL, spinning off": ("ORT_ENABLE_ALL", "0"),
}


def settings_img_s(path: str, threads: int, batch_sizes: list[int], rounds: int = 5) -> dict:
    """batch -> setting -> img/s of one file under each of SETTINGS, interleaved (gandistill.timing)."""
    sessions = {}
    for label, (level, spin) in SETTINGS.items():
        options = session_options(threads)
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        sessions[label] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    z_dim = next(iter(sessions.values())).get_inputs()[0].shape[1]
    out = {}
    for n in batch_sizes:
        z = np.random.default_rng(0).standard_normal((n, z_dim), dtype=np.float32)
        calls = {k: (lambda s=s, z=z: s.run(None, {s.get_inputs()[0].name: z})) for k, s in sessions.items()}
        timed = compare(calls, rounds=rounds, runs=20 if n > 1 else 200, warmup=3, budget_s=4.0)
        out[n] = {k: n / v["s"] for k, v in timed.items()}
    return out


def node_events(path: str, threads: int, z: np.ndarray, runs: int = 20) -> list[dict]:
    """onnxruntime's profiler events of each kernel run (optimised graph's nodes), over ``runs`` runs."""
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
    return [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]


def op_times(path: str, threads: int, z: np.ndarray, runs: int = 20) -> dict:
    """operator type -> mean microseconds per run, from onnxruntime's profiler (optimised graph's nodes)."""
    totals = collections.Counter()
    for e in node_events(path, threads, z, runs):
        totals[e["args"]["op_name"]] += e["dur"]
    return {op: us / (runs + 1) for op, us in totals.most_common()}


def graph_macs(path: str) -> dict[str, int]:
    """Node name -> multiply-adds per image of each convolution and matrix product in the file, from its weight
    shapes and shape inference (the profiler does not record weight shapes)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}

    def weight(name: str) -> list[int]:  # through a DequantizeLinear in a QDQ file
        while name not in inits and name in producers and producers[name].op_type == "DequantizeLinear":
            name = producers[name].input[0]
        return inits.get(name, [])

    macs = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        w = weight(node.input[1])
        if not w:
            continue
        if node.op_type == "ConvTranspose":  # every input pixel meets the whole kernel
            macs[node.name] = int(np.prod(w)) * int(np.prod(shapes.get(node.input[0], [0, 0, 0, 0])[2:]))
        elif node.op_type == "Conv":  # the kernel [out, in, kh, kw] at every output pixel
            macs[node.name] = int(np.prod(w)) * int(np.prod(shapes.get(node.output[0], [0, 0, 0, 0])[2:]))
        else:
            macs[node.name] = int(np.prod(w))
    return macs


def _source_node(name: str, macs: dict) -> str:
    """The file's node an optimised-graph node came from: onnxruntime prefixes 'fused ' and suffixes
    '_token_N' / '_nchwc' when it fuses or re-lays out a node, and names a convolution fused with the ReLU after
    it by the ReLU (onnx_forms names them <layer>.<form>.conv[i] and .relu[i] / .relu_out)."""
    name = re.sub(r"(_token_\d+|_nchwc)+$", "", name.removeprefix("fused "))
    fused = re.sub(r"\.relu(_out)?(\d*)$", r".conv\2", name)
    return name if name in macs or fused not in macs else fused


def layer_times(path: str, threads: int, z: np.ndarray, runs: int = 20) -> list[dict]:
    """Per node of the optimised graph: op, output shape, microseconds per run, MACs and GMAC/s."""
    macs = graph_macs(path)
    per_node: dict[str, dict] = {}
    for e in node_events(path, threads, z, runs):
        args = e["args"]
        name = e["name"].removesuffix("_kernel_time")
        outputs = [next(iter(x.values())) for x in args.get("output_type_shape", [])]
        node = per_node.setdefault(name, {"op": args["op_name"], "output": outputs[:1],
                                          "macs": macs.get(_source_node(name, macs), 0) * len(z), "us": 0.0})
        node["us"] += e["dur"] / (runs + 1)
    for node in per_node.values():
        node["gmac_s"] = node["macs"] / (node["us"] * 1e3) if node["us"] and node["macs"] else None
    return [{"node": name, **node} for name, node in per_node.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("float_onnx", help="the float export")
    parser.add_argument("int8_onnx", help="its --quantize int8 export")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default: 2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], metavar="N")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per batch size (default: 7)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round (default: 1.0)")
    parser.add_argument("--ops", action="store_true", help="also print per-operator time at the largest batch")
    parser.add_argument("--settings", action="store_true",
                        help="also time each file under gandistill's onnxruntime settings and the alternatives")
    parser.add_argument("--layers", action="store_true",
                        help="also print each node's time, MACs and GMAC/s at the largest batch (why a form is slow)")
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
    if args.layers:
        z = rng.standard_normal((max(args.batch_sizes), z_dim), dtype=np.float32)
        result["layers"] = {name: layer_times(p, args.threads, z) for name, p in paths.items()}
        for name, layers in result["layers"].items():
            print(f"\n{name} at batch {max(args.batch_sizes)}, per node of the optimised graph:")
            print("| node | op | output | MACs | us per run | GMAC/s |\n|---|---|---|---:|---:|---:|")
            for x in layers:
                rate = f"{x['gmac_s']:.1f}" if x["gmac_s"] else ""
                print(f"| {x['node']} | {x['op']} | {x['output'][0] if x['output'] else ''} | {x['macs']:,} | "
                      f"{x['us']:,.0f} | {rate} |")
    if args.settings:
        result["settings_img_s"] = {name: settings_img_s(p, args.threads, args.batch_sizes, args.rounds)
                                    for name, p in paths.items()}
        print("\n| file | batch | " + " | ".join(SETTINGS) + " |\n|---|---|" + "---:|" * len(SETTINGS))
        for name, per_batch in result["settings_img_s"].items():
            for n, rates in per_batch.items():
                print(f"| {name} | {n} | " + " | ".join(f"{rates[k]:,.0f}" for k in SETTINGS) + " |")
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
