"""The report: teacher and students side by side under one protocol.

``write_report(results, profiles, out)`` turns evaluate() records and profile() results into ``report.md``,
``report.json`` and ``fid_vs_macs.png``; ``make_report(generators, ...)`` runs evaluate, profile and sample
first and then writes the same files plus sample grids.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path

from .checkpoint import atomic_write, from_pretrained
from .config import EvalConfig, ProfileConfig, width_tag
from .metrics import FID_BIAS_NOTE, evaluate
from .outputs import check_file_target
from .profile import attach_speedups, find_teachers, profile_models, speedup
from .profile import profile as profile_model
from .samples import is_grid_png, sample

REPORT_FILES = ("report.md", "report.json", "fid_vs_macs.png")
PROTOCOL_FIELDS = ("dataset", "split", "num_samples", "extractor", "weights_sha256", "seeds")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/")).strip("_") or "model"


def _unique_slugs(labels: Sequence[str]) -> list[str]:
    """File-name slugs, one per label, never two alike (m/w05 and m_w05 both slug to m_w05)."""
    out: list[str] = []
    for label in labels:
        slug, n = _slug(label), 2
        while slug in out:
            slug, n = f"{_slug(label)}-{n}", n + 1
        out.append(slug)
    return out


def _si(n: float | None) -> str:
    if n is None:
        return "-"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:g}"


def _num(x: float, digits: int) -> str:
    # fixed digits for the usual magnitudes; tiny values keep significant digits instead of reading as 0
    return f"{x:.{digits}f}" if x == 0 or abs(x) >= 10 ** -digits else f"{x:.2g}"


def _value(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "unavailable"
    return _num(mean, digits) + (f" ± {_num(std, digits)}" if std is not None else "")


def _cell(metric: dict | None, digits: int) -> str:
    return "-" if metric is None else _value(metric["mean"], metric["std"], digits)


def _metric(result: dict, prefix: str) -> tuple[str | None, float | None, float | None, bool]:
    """(key, mean, std across seeds, present) of the first metric named ``prefix<count>[...]``."""
    for key, value in result.get("metrics", {}).items():
        if re.match(rf"{prefix}\d+k?\[", key):
            return key, value, result.get("metrics_std", {}).get(key), True
    return None, None, None, False


def _check_protocol(results: list[dict]) -> dict:
    if not results:
        raise ValueError("write_report needs at least one evaluate() result")
    first = {k: results[0]["protocol"].get(k) for k in PROTOCOL_FIELDS}
    for r in results[1:]:
        other = {k: r["protocol"].get(k) for k in PROTOCOL_FIELDS}
        if other != first:
            diff = ", ".join(f"{k}: {first[k]!r} vs {other[k]!r}" for k in PROTOCOL_FIELDS if first[k] != other[k])
            raise ValueError(f"results were evaluated under different protocols ({diff}); evaluate them together")
    return results[0]["protocol"]


def protocol_line(protocol: dict) -> str:
    seeds = protocol["seeds"]
    real = "reference" if protocol.get("reference") == "teacher" else "real"
    return (f"{protocol['dataset']}/{protocol['split']}: {protocol['num_samples']} generated vs "
            f"{protocol.get('num_real', '?')} {real} images at {protocol.get('resolution', '?')}px; extractor "
            f"{protocol['extractor']} (weights sha256 {protocol['weights_sha256'][:12]}..., "
            f"{protocol.get('weights_source', '')}); seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}" + (" (mean ± std across seeds)" if len(seeds) > 1 else "")
            + f"; latents {protocol.get('latents', '')}; KID subset size {protocol.get('kid_subset_size', '-')}; "
            f"torch-fidelity {protocol.get('torch_fidelity', '?')}")


def build_rows(results: list[dict], profiles: Sequence[dict] | None = None) -> list[dict]:
    """One row per evaluated generator, joined with its profile (by model name) and its teacher's."""
    by_name: dict[str, dict] = {}
    for p in profiles or []:  # a model profiled on several devices: its first profile (the CLI's is the CPU)
        by_name.setdefault(p["model"], p)
    rows = []
    for r in results:
        prof = by_name.get(r["model"], {})
        paired = r.get("paired") or {}
        teacher = paired.get("teacher") or prof.get("teacher")
        row = {"model": r["model"], "family": r.get("family"), "width": _width_cell(r),
               "params": r.get("params", prof.get("params")), "macs": r.get("macs", prof.get("macs")),
               "latency_ms_p50": prof.get("latency_ms_p50"), "latency_ms_p90": prof.get("latency_ms_p90"),
               "throughput_img_s": prof.get("throughput_img_s"), "peak_memory_mb": prof.get("peak_memory_mb"),
               "teacher": teacher, "psnr": paired.get("psnr"), "ssim": paired.get("ssim"),
               "feature_l2": paired.get("feature_l2")}
        for prefix in ("fid", "kid", "is"):
            key, mean, std, present = _metric(r, prefix)
            row[prefix] = {"key": key, "mean": mean, "std": std} if present else None
        if teacher and teacher in by_name and prof:
            row["speedup"] = speedup(by_name[teacher], prof)
        elif teacher and r.get("macs") and any(x["model"] == teacher for x in results):
            t = next(x for x in results if x["model"] == teacher)
            row["speedup"] = {"teacher": teacher, "mac_ratio": t["macs"] / r["macs"]}
        rows.append(row)
    return rows


def _markdown(rows: list[dict], protocol: dict, notes: list[str], machine: str, files: dict, title: str) -> str:
    def header_of(prefix: str, fallback: str) -> str:
        keys = [row[prefix]["key"] for row in rows if row[prefix]]
        return keys[0] if keys else fallback

    cols = ["model", "width", "params", "MACs/img", "latency p50 / p90 (ms, batch 1)", "throughput (img/s)",
            header_of("fid", "FID"), header_of("kid", "KID"), header_of("is", "IS"),
            "PSNR (dB) / SSIM vs teacher", "speed-up vs teacher (MAC ratio)"]
    lines = [f"# {title}", "", f"**Protocol.** {protocol_line(protocol)}", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        latency = ("-" if row["latency_ms_p50"] is None
                   else f"{row['latency_ms_p50']:.2f} / {row['latency_ms_p90']:.2f}")
        throughput = "-" if row["throughput_img_s"] is None else f"{row['throughput_img_s']:.0f}"
        pair = "-" if row["psnr"] is None else f"{row['psnr']:.2f} / {row['ssim']:.4f}"
        sp = row.get("speedup") or {}
        if "latency_speedup" in sp:
            speed = (f"{sp['latency_speedup']:.2f}x latency, {sp['throughput_speedup']:.2f}x throughput "
                     f"({sp['mac_ratio']:.2f}x fewer MACs)")
        elif "mac_ratio" in sp:
            speed = f"not profiled ({sp['mac_ratio']:.2f}x fewer MACs)"
        else:
            speed = "-"
        width = row["width"] or "-"
        lines.append("| " + " | ".join([f"`{row['model']}`", width, _si(row["params"]), _si(row["macs"]), latency,
                                        throughput, _cell(row["fid"], 2), _cell(row["kid"], 4), _cell(row["is"], 3), pair,
                                        speed]) + " |")
    lines += ["", f"**Machine.** {machine}", ""]
    if notes:
        lines += ["**Notes.**", ""] + [f"- {n}" for n in notes] + [""]
    if files.get("plot"):
        lines += [f"![FID against MACs]({Path(files['plot']).name})", ""]
    for label, path in (files.get("grids") or {}).items():
        lines += [f"**{label}**", "", f"![{label}]({Path(path).name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def spread_labels(ys: Sequence[float], gap: float, low: float = 0.0, high: float = 1.0) -> list[float]:
    """Label heights for points at heights ``ys`` (axes fractions): each as close to its point as it can be,
    no two closer than ``gap``, inside [low, high] when they fit. Returns them in the order of ``ys``."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    pos = [min(max(ys[i], low), high) for i in order]
    for k in range(1, len(pos)):  # push up past the one below
        pos[k] = max(pos[k], pos[k - 1] + gap)
    if pos and pos[-1] > high:  # then down from the top, as far as the bottom allows
        pos[-1] = max(high, low + gap * (len(pos) - 1))
        for k in range(len(pos) - 2, -1, -1):
            pos[k] = min(pos[k], pos[k + 1] - gap)
    out = [0.0] * len(ys)
    for k, i in enumerate(order):
        out[i] = pos[k]
    return out


def same_cost_group(rows: list[dict], rel: float = 0.01) -> list[dict]:
    """The largest set (>= 3) of rows whose MACs agree within ``rel``: drawn on a panel of their own."""
    best: list[dict] = []
    for r in rows:
        group = [q for q in rows if abs(q["macs"] - r["macs"]) <= rel * r["macs"]]
        if len(group) > len(best):
            best = group
    return best if len(best) >= 3 else []


def _width_cell(record: dict) -> str | None:
    """``0.25`` for a uniform width, ``c123-13-34`` for per-block channels, None when the record has neither."""
    if record.get("layer_channels"):
        return "c" + "-".join(map(str, record["layer_channels"]))
    return None if record.get("width") is None else f"{record['width']:g}"


def _point_label(row: dict) -> str:
    name = "/".join(Path(row["model"]).parts[-2:]) or row["model"]
    width = row.get("width")
    if width is None or width == "":
        return name
    if isinstance(width, str) and width.startswith("c"):  # per-block channels
        return f"{name} ({width})"
    return f"{name} (w={float(width):g})"


def plot_fid_vs_macs(rows: list[dict], path: Path) -> Path | None:
    """FID (or KID) against MACs: every point labelled, labels spread so none overlap, with a line to their
    point when moved; models that share one cost (an ablation) get a bar panel of their own beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    def finite(v) -> bool:
        return v is not None and math.isfinite(v)

    prefix = "fid" if any(r["fid"] and r["fid"]["mean"] is not None for r in rows) else "kid"
    points = [r for r in rows if r[prefix] and finite(r[prefix]["mean"]) and finite(r["macs"]) and r["macs"] > 0]
    if not points:
        return None
    mean = [r[prefix]["mean"] for r in points]
    std = [r[prefix]["std"] if finite(r[prefix]["std"]) else 0.0 for r in points]  # one seed: no error bar
    key = points[0][prefix]["key"]
    group = same_cost_group(points)
    fig, axes = plt.subplots(1, 2 if group else 1, figsize=(11.5 if group else 7.5, 4.8), dpi=120, squeeze=False,
                             gridspec_kw={"width_ratios": [1.9, 1]} if group else None)
    ax = axes[0][0]
    colors = plt.get_cmap("tab10" if len(points) <= 10 else "tab20").colors
    for i, r in enumerate(points):
        ax.errorbar(r["macs"], mean[i], yerr=std[i], fmt="o", capsize=3, color=colors[i % len(colors)])
    ax.set_xscale("log")
    xs = [r["macs"] for r in points]
    ax.set_xlim(min(xs) / 1.6, max(xs) * 1.8)
    low = min(0.0, *(m - e for m, e in zip(mean, std, strict=True)))  # KID can be negative
    high = max(m + e for m, e in zip(mean, std, strict=True))
    span = (high - low) or abs(high) or 1.0
    ax.set_ylim(low - (0.04 * span if low < 0 else 0.0), high + 0.08 * span)
    y0, y1 = ax.get_ylim()
    fracs = [(m - y0) / (y1 - y0) for m in mean]
    gap = min(0.065, 0.98 / len(points))
    label_y = spread_labels(fracs, gap, low=0.02, high=0.98)
    text_at = blended_transform_factory(ax.transData, ax.transAxes)
    labels = []
    for r, frac, ly in zip(points, fracs, label_y, strict=True):
        moved = abs(ly - frac) > gap / 3
        labels.append(ax.annotate(_point_label(r), xy=(r["macs"], frac), xycoords=text_at,
                                  xytext=(r["macs"] * 1.25, ly), textcoords=text_at, fontsize=8, va="center",
                                  arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.5"} if moved else None))
    ax.set_xlabel("MACs per generated image (multiply-accumulates, log scale)")
    ax.set_ylabel(f"{key} (lower is better)")
    ax.set_title(f"{key} against compute (left is cheaper)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if group:
        bx = axes[0][1]
        order = sorted(range(len(points)), key=lambda i: mean[i])
        order = [i for i in order if points[i] in group]
        values = [mean[i] for i in order]
        bx.barh(range(len(order)), values, xerr=[std[i] for i in order] if any(std[i] for i in order) else None,
                capsize=3, color=[colors[i % len(colors)] for i in order])
        bx.set_yticks(range(len(order)), [_point_label(points[i]) for i in order], fontsize=8)
        bx.invert_yaxis()
        for k, v in enumerate(values):
            bx.text(v, k, f" {v:.4g}", va="center", fontsize=8)
        bar_low, bar_high = min(0.0, *values), max(0.0, *(mean[i] + std[i] for i in order))
        bar_span = (bar_high - bar_low) or 1.0
        bx.set_xlim(bar_low - (0.1 * bar_span if bar_low < 0 else 0.0), bar_high + 0.25 * bar_span)
        bx.set_xlabel(key)
        bx.set_title(f"the {len(order)} models at {points[order[0]]['macs'] / 1e6:.3g}M MACs", fontsize=10)
        bx.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    # a label that would run past the right edge of the axes goes on the left of its point instead
    renderer = fig.canvas.get_renderer()
    right_edge = ax.get_window_extent(renderer).x1
    for r, text in zip(points, labels, strict=True):
        if text.get_window_extent(renderer).x1 > right_edge:
            text.set_position((r["macs"] / 1.25, text.get_position()[1]))
            text.set_horizontalalignment("right")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def _machine(profiles: Sequence[dict] | None) -> str:
    devices = sorted({f"{p.get('device')}" + (f" ({p['threads']} threads)" if p.get("threads") else "")
                      for p in profiles or []})
    cpu = platform.processor() or platform.machine()
    try:  # the CPU's name, where Linux tells it
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.system()} {cpu}, {os.cpu_count()} logical CPUs; timings on "
            f"{', '.join(devices) if devices else 'nothing (not profiled)'}")


def _report_json(path: Path) -> dict | None:
    """What write_report wrote into report.json; None for a file of any other content."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    keys = {"title", "protocol", "protocol_line", "rows", "results", "files"}
    if not isinstance(data, dict) or not keys <= set(data) or not isinstance(data["protocol_line"], str) \
            or not isinstance(data["files"], dict):
        return None
    return data


def made_by_report(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file a report wrote: report.json of its shape, the report.md and plot it names, a grid."""
    path = Path(path)
    if path.name not in REPORT_FILES:
        return is_grid_png(path)
    data = _report_json(path.parent / "report.json") if not (path.parent / "report.json").is_symlink() else None
    if data is None:
        return False
    if path.name == "report.md":
        try:
            return f"**Protocol.** {data['protocol_line']}" in path.read_text()
        except (OSError, UnicodeDecodeError):
            return False
    if path.name == "fid_vs_macs.png":
        with open(path, "rb") as f:
            png = f.read(8) == b"\x89PNG\r\n\x1a\n"
        return png and str(data["files"].get("plot") or "").endswith("fid_vs_macs.png")
    return True


def check_report_targets(out: str | os.PathLike, grids: Sequence[str | os.PathLike] = (), *,
                         overwrite: bool = False) -> None:
    """Before any work: report.md, report.json, the plot and ``grids`` in ``out`` are new or a report's own
    (a link there is never written through); ``overwrite`` replaces them."""
    out = Path(out)
    for path in [*(out / name for name in REPORT_FILES), *map(Path, grids)]:
        check_file_target(path, overwrite=overwrite, made_here=made_by_report)


def write_report(results: list[dict], profiles: Sequence[dict] | None = None, out: str | os.PathLike = "report",
                 grids: dict[str, str | os.PathLike] | None = None, title: str = "gandistill: teacher vs students",
                 machine: str | None = None, *, overwrite: bool = False) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and ``fid_vs_macs.png`` into ``out``; returns their paths.

    results: evaluate() records (one protocol); profiles: profile() results, joined by model name;
    grids: caption -> PNG already written (e.g. by sample()), shown in report.md. overwrite: replace report files
    in ``out`` that a report did not write (see `check_report_targets`).
    """
    out = Path(out)
    check_report_targets(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    protocol = _check_protocol(results)
    rows = build_rows(results, profiles)
    notes = list(dict.fromkeys(n for r in results for n in r.get("notes", [])))
    if protocol["extractor"] != "inception":
        notes.append(f"{protocol['extractor']} features make FID/KID/IS comparable within this report only, not "
                     f"with published (inception) numbers")
    if len(protocol["seeds"]) == 1 and protocol["num_samples"] < 10_000 and FID_BIAS_NOTE not in notes:
        notes.append(FID_BIAS_NOTE)
    files: dict = {"grids": {k: Path(v) for k, v in (grids or {}).items()}}
    files["plot"] = plot_fid_vs_macs(rows, out / "fid_vs_macs.png")
    machine = machine or _machine(profiles)
    md = _markdown(rows, protocol, notes, machine, files, title)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(md))
    data = {"title": title, "protocol": protocol, "protocol_line": protocol_line(protocol), "machine": machine,
            "rows": rows, "notes": notes, "results": results, "profiles": list(profiles or []),
            "files": {"plot": str(files["plot"]) if files["plot"] else None,
                      "grids": {k: str(v) for k, v in files["grids"].items()}}}
    atomic_write(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))
    paths = {"markdown": out / "report.md", "json": out / "report.json"}
    if files["plot"]:
        paths["plot"] = files["plot"]
    return paths


def make_report(generators, out: str | os.PathLike = "report", dataset: str = EvalConfig.dataset,
           split: str = EvalConfig.split, metrics: Sequence[str] = EvalConfig.metrics,
           extractor: str = EvalConfig.extractor, num_samples: int = EvalConfig.num_samples,
           seed: int | Sequence[int] = EvalConfig.seed, device: str = EvalConfig.device,
           batch_size: int = EvalConfig.batch_size, data_root: str | os.PathLike | None = None, *,
           extractor_weights: str | os.PathLike | None = None, paired: int = EvalConfig.paired,
           names: Sequence[str] | None = None, profile: bool = True,
           latency_runs: int = ProfileConfig.latency_runs, throughput_batch: int = ProfileConfig.throughput_batch,
           rounds: int = ProfileConfig.rounds, sample_num: int = 64, title: str = "gandistill: teacher vs students",
           verbose: bool = False, overwrite: bool = False) -> dict[str, Path]:
    """Evaluate, profile and sample ``generators`` (modules or directories), then write_report() into ``out``.

    overwrite: replace report files and grids in ``out`` that a report did not write; without it they are
    refused before anything is evaluated."""
    if profile:  # a bad timing setting fails now, not after the evaluation
        ProfileConfig(device=device, latency_runs=latency_runs, throughput_batch=throughput_batch, rounds=rounds)
    items = [generators] if isinstance(generators, (str, os.PathLike)) else list(generators)
    models = [from_pretrained(g, "generator") if isinstance(g, (str, os.PathLike)) else g for g in items]
    labels = _labels(models, list(names) if names is not None
                     else [str(g) if isinstance(g, (str, os.PathLike)) else None for g in items])
    out = Path(out)
    first_seed = seed if isinstance(seed, int) else next(iter(seed))
    grids = report_grids(out, labels, find_teachers(models), sample_num, first_seed)
    check_report_targets(out, [path for path, _ in grids.values()], overwrite=overwrite)
    results = evaluate(models, dataset, split, metrics, extractor, num_samples, seed, device, batch_size, data_root,
                       extractor_weights=extractor_weights, paired=paired, names=labels, verbose=verbose)
    profiles = []
    if profile:
        # PyTorch generators are timed together in interleaved rounds (speed-ups a busy machine cannot fake);
        # exported .onnx files run in onnxruntime, each on its own
        onnx = [i for i, m in enumerate(models) if isinstance(m, (str, os.PathLike)) and str(m).endswith(".onnx")]
        torch_ids = [i for i in range(len(models)) if i not in onnx]
        timed = dict(zip(torch_ids, profile_models([models[i] for i in torch_ids], device=device,
                                                   latency_runs=latency_runs, throughput_batch=throughput_batch,
                                                   rounds=rounds, names=[labels[i] for i in torch_ids]),
                             strict=True)) \
            if torch_ids else {}
        for i in onnx:
            timed[i] = profile_model(models[i], device=device, latency_runs=latency_runs,
                                     throughput_batch=throughput_batch, name=labels[i])
        profiles = [timed[i] for i in range(len(models))]
        attach_speedups(profiles)
    captions = {}
    for (i, t), (path, caption) in grids.items():
        if t is None:
            sample(models[i], num=sample_num, seed=first_seed, out=path, scale=2, overwrite=overwrite)
        else:
            sample(models[t], num=min(sample_num, 32), seed=first_seed, compare=models[i], out=path, scale=2,
                   overwrite=overwrite)
        captions[caption] = path
    return write_report(results, profiles, out, captions, title, overwrite=overwrite)


def report_grids(out: Path, labels: Sequence[str], teachers: dict[int, int], sample_num: int,
                 seed: int) -> dict[tuple[int, int | None], tuple[Path, str]]:
    """The sample grids a report draws: (model, None) -> its samples, (student, teacher) -> both from the same z;
    each its path in ``out`` and caption. ``teachers``: student index -> teacher index."""
    if not sample_num:
        return {}
    slugs = _unique_slugs(labels)
    grids = {}
    for i, label in enumerate(labels):
        grids[i, None] = (out / f"samples_{slugs[i]}_seed{seed}.png", f"{label}: {sample_num} samples, seed {seed}")
        if i in teachers:
            t = teachers[i]
            grids[i, t] = (out / f"compare_{slugs[i]}_vs_{slugs[t]}_seed{seed}.png",
                           f"same z: teacher {labels[t]} (odd rows) vs student {label} (even rows)")
    return grids


def _labels(models, labels) -> list[str]:
    out = []
    for i, (m, label) in enumerate(zip(models, labels, strict=True)):
        out.append(label or getattr(m, "source", None) or f"{m.family}-{width_tag(m.config)}-{i}")
    return out
