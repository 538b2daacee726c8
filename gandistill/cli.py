"""The command line: thin. Parses, calls the API with the same parameter names, prints.

Flags of ``train`` and ``distill`` are generated from the config dataclasses, so the API and the CLI
share one set of names and defaults.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import cli_shipping
from .cli_args import (
    UsageError,
    _float_list,
    _int_list,
    _metric_list,
    _Parser,
    add_config_flags,
    check_data_flags,
    check_output,
    config_from_args,
    width_list,
)
from .config import (
    DISTILL_BOOKKEEPING,
    GAN_FAMILIES,
    MAX_SEED,
    METRICS,
    SPLITS,
    DemoConfig,
    DistillConfig,
    ProfileConfig,
    TrainConfig,
)
from .fields import field_help
from .outputs import (
    OutputRefused,
    check_file_target,
    check_fresh_dir,
    check_no_links,
    check_not_input,
    removed_if_failed,
)


def build_parser() -> argparse.ArgumentParser:
    from .data import DATASETS
    from .metrics import EXTRACTORS

    datasets = DATASETS.names()
    parser = _Parser(
        prog="gandistill",
        description="Compress GAN generators by knowledge distillation: train, distill, evaluate, export.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="family, config, params, MACs and lineage of a saved model")
    p.add_argument("path", help="a model directory or a GAN directory")

    p = sub.add_parser("train", help="train a GAN from scratch (teachers, baselines)")
    add_config_flags(p, TrainConfig, choices={"data": datasets})

    p = sub.add_parser("distill", help="distill a narrower student from a teacher generator")
    add_config_flags(p, DistillConfig, choices={"data": [*datasets, "none"]})

    _add_search_parser(sub, datasets)
    from .importers import FORMATS as IMPORT_FORMATS

    p = sub.add_parser("import", help="convert a generator trained elsewhere into a GAN directory (generator/, and "
                                      "discriminator/ when the file has one); reads tensors only, runs no code")
    p.add_argument("path", help="the checkpoint file (.pt/.pth/.safetensors, or an NVlabs .pkl)")
    p.add_argument("--format", default="auto", choices=["auto", *IMPORT_FORMATS.names()],
                   help="; ".join(f"{n}: {IMPORT_FORMATS.get(n).description}" for n in IMPORT_FORMATS)
                   + " (default: %(default)s: detected from the file)")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--family", default=None, choices=GAN_FAMILIES,
                   help="instead of --format: a plain state dict of one of our own families, written as one "
                        "model directory (config.json + model.safetensors)")
    p.add_argument("--kind", default="generator", choices=("generator", "discriminator"),
                   help="with --family: what the state dict holds (default: %(default)s)")
    p.add_argument("--config", default="{}", metavar="JSON",
                   help='with --family: model config fields as JSON, e.g. \'{"base_channels": 64}\' (default: {})')
    p.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                   help="with --family: fail on any missing, unexpected or mis-shaped key (default: on)")
    p.add_argument("--overwrite", action="store_true", help="write into an --out that already holds files")

    p = sub.add_parser("demo", help="the main job: distill the shipped teacher, evaluate both, profile, export, "
                                    "report")
    add_config_flags(p, DemoConfig,
                     choices={"data": [*datasets, "none"], "dataset": datasets, "extractor": EXTRACTORS.names()})

    _add_evaluation_parsers(sub)
    _add_export_parser(sub)
    cli_shipping.add_parsers(sub)
    return parser


def _cmd_info(args) -> int:
    from .checkpoint import from_pretrained, read_config, resolve_model_dir
    from .models import BLOCK_CHANNELS, block_channels
    from .profile import count_macs, count_params

    directory = resolve_model_dir(args.path)
    meta = read_config(directory)
    model = from_pretrained(directory, meta["kind"])
    print(f"path:      {directory}")
    print(f"family:    {meta['family']} ({meta['kind']})")
    print(f"config:    {', '.join(f'{k}={v}' for k, v in meta['config'].items())}")
    print(f"params:    {count_params(model):,}")
    if meta["kind"] == "generator":
        print(f"MACs:      {count_macs(model):,} per image")
        if meta["family"] in BLOCK_CHANNELS:  # what distill --widths sizes, one entry per block
            blocks = block_channels(meta["family"], meta["config_obj"])
            print(f"blocks:    {', '.join(f'{b} {c}' for b, c in blocks.items())} channels")
    lineage = meta.get("lineage")
    if not lineage:
        print("lineage:   none (not a distilled student)")
        return 0
    teacher = lineage.get("teacher") if isinstance(lineage, dict) else None
    if not isinstance(teacher, dict) or not isinstance(teacher.get("config"), dict):
        print("lineage:   present but not in the expected form (config.json edited by hand?)")
        return 0
    print(f"lineage:   student of a {teacher.get('family')} teacher "
          f"(base_channels={teacher['config'].get('base_channels')}, width={teacher['config'].get('width')}), "
          + (f"per-block channels {lineage['layer_channels']}" if isinstance(lineage.get("layer_channels"), dict)
             else f"width x{lineage.get('width')}") + f", init={lineage.get('init')}"
          + (f", picked for macs {lineage['macs_budget']} at balance {lineage.get('balance')}"
             if lineage.get("macs_budget") else ""))
    if teacher.get("weights_sha256"):
        print(f"  teacher weights sha256: {teacher['weights_sha256']}")
    kept = lineage.get("kept_channels")
    for group, idx in (kept.items() if isinstance(kept, dict) else ()):
        if isinstance(idx, list):
            shown = ", ".join(map(str, idx[:8])) + (", ..." if len(idx) > 8 else "")
            print(f"  kept {group}: {len(idx)} channels [{shown}]")
    return 0


def _run_into_out(config, run, *, check_data: bool = True):
    """Check the data flags (when the run reads data) and the output folder before ``run(config)`` starts;
    a run that fails before writing any state leaves no empty folder behind."""
    if check_data:
        check_data_flags(config)
    check_output(config.out, directory=True)
    with removed_if_failed(config.out):
        return run(config)


def _cmd_train(args) -> int:
    from .train import train

    result = _run_into_out(config_from_args(TrainConfig, args), train)
    return _report_run(result, "generator")


def _cmd_distill(args) -> int:
    from .train import distill

    config = config_from_args(DistillConfig, args)
    result = _run_into_out(config, distill, check_data=config.data != "none" and config.adversarial > 0)
    return _report_run(result, "student")


def _add_search_parser(sub, datasets) -> None:
    from .search import PER_RUN, SearchConfig

    d = SearchConfig()
    p = sub.add_parser("search", help="rank per-block widths under a MACs budget by short distillations; prints "
                                      "the command that distils the winner")
    p.add_argument("--teacher", default=d.teacher, help=field_help(DistillConfig, "teacher") + " (default: %(default)s)")
    p.add_argument("--macs", default=d.macs, help="the budget: MACs per image (1.5M, 250k, 1500000) or a "
                                                  "reduction of the teacher's (10x) (default: %(default)s)")
    p.add_argument("--balances", type=_float_list, default=list(d.balances), metavar="B,B,...",
                   help="candidates picked for the budget at these balances (distill --balance; 0 = uniform width) "
                        "(default: %(default)s)")
    p.add_argument("--candidates", nargs="*", type=width_list, default=[], metavar="C,C,...",
                   help="more candidates: per-block channel counts, lowest resolution first, e.g. 128,16,32")
    p.add_argument("--steps", type=int, default=d.steps, help="distillation steps per run (default: %(default)s)")
    p.add_argument("--seeds", type=_int_list, default=list(d.seeds), metavar="S,S,...",
                   help="a run per candidate and seed; ranked by the mean (default: %(default)s)")
    p.add_argument("--num-samples", dest="num_samples", type=int, default=d.num_samples,
                   help="images per run for the selection FID on the train split (default: %(default)s)")
    p.add_argument("--paired", type=int, default=d.paired, help="latents for PSNR vs the teacher (default: %(default)s)")
    p.add_argument("--device", default=d.device, help="cpu or cuda (default: %(default)s)")
    p.add_argument("--out", default=d.out, help="search directory: runs, search.json, table.md, search.png; a "
                                                "second call resumes (default: %(default)s)")
    recipe = p.add_argument_group("recipe", "distill settings for every run (each at distill's default unless given)")
    add_config_flags(recipe, DistillConfig, choices={"data": [*datasets, "none"]},
                     exclude=PER_RUN | DISTILL_BOOKKEEPING | {"device"})


def _cmd_search(args) -> int:
    import dataclasses

    from .search import PER_RUN, SearchConfig, search

    recipe = {f.name: getattr(args, f.name) for f in dataclasses.fields(DistillConfig)
              if f.name not in PER_RUN | DISTILL_BOOKKEEPING | {"device"} and getattr(args, f.name) != f.default}
    try:
        config = SearchConfig(teacher=args.teacher, out=args.out, macs=args.macs, balances=tuple(args.balances),
                              candidates=tuple(map(tuple, args.candidates)), steps=args.steps,
                              seeds=tuple(args.seeds), num_samples=args.num_samples, paired=args.paired,
                              device=args.device, recipe=recipe)
    except ValueError as e:
        raise UsageError(str(e)) from None
    record = search(config)
    print(record["command"])
    return 0


def _known_format_hint(path) -> str:
    """'; it is a <format> checkpoint: drop --family ...' where the file is one the importers recognise."""
    from .importers import FORMATS, read_checkpoint

    try:
        obj = read_checkpoint(path)
    except (ValueError, OSError, RuntimeError):
        return ""
    found = next((name for name in FORMATS if FORMATS.get(name).detect(obj) is not None), None)
    return f"; it is a {found} checkpoint: drop --family (and --config) to import it as one" if found else ""


def _cmd_import(args) -> int:
    import json

    from .checkpoint import import_state_dict, save_gan, save_pretrained, sha256_file
    from .importers import import_checkpoint

    check_output(args.out, directory=True)
    if Path(args.out).is_symlink():  # --overwrite writes into OUT: never through a link out of it
        raise OutputRefused(f"--out {args.out}: is a symbolic link; a command follows no link out of its output "
                            f"folder")
    check_no_links(args.out)
    if args.family is None:
        if args.config != "{}" or args.kind != "generator":
            raise UsageError("--config and --kind go with --family (a state dict of our own families)")
        imported = import_checkpoint(args.path, args.format)  # everything is checked before anything is written
        check_not_input(args.out, {"path": args.path})
        check_fresh_dir(args.out, overwrite=args.overwrite)
        with removed_if_failed(args.out):
            save_gan(imported.generator, imported.discriminator, args.out,
                     extra={"imported_from": str(args.path), "import_format": imported.format,
                            "source_sha256": sha256_file(args.path)})
        print(imported.report())
        print(f"written {args.out}: generator/" + (" and discriminator/" if imported.discriminator else ""))
        return 0
    if args.format != "auto":
        raise UsageError("--family imports a state dict of our own families; it does not go with --format")
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as e:
        raise UsageError(f"--config is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise UsageError("--config must be a JSON object")
    try:
        model, report = import_state_dict(args.path, args.family, args.kind, config, strict=args.strict)  # reads
    except ValueError as e:
        raise ValueError(f"{e}{_known_format_hint(args.path)}") from None
    check_not_input(args.out, {"path": args.path})
    check_fresh_dir(args.out, overwrite=args.overwrite)
    with removed_if_failed(args.out):
        save_pretrained(model, args.out, extra={"imported_from": str(args.path)})
    print(f"{report.summary()}; written {args.out}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import demo

    config = config_from_args(DemoConfig, args)
    paths = _run_into_out(config, demo, check_data=config.data != "none")
    md = Path(paths["markdown"]).read_text().splitlines()
    print("\n".join(line for line in md if line.startswith("|") or line.lower().startswith("protocol")))
    print(f"\nreport:  {paths['markdown']}  (and {Path(paths['json']).name}"
          + (f", {Path(paths['plot']).name}" if paths.get("plot") else "") + ")")
    print(f"student: {paths['student']}   exported: {paths['export']}")
    print(f"took {paths['seconds']:.0f} s")
    return 0


def _report_run(result, what: str) -> int:
    if result.status == "interrupted":
        print(f"interrupted at step {result.step}; state saved in {result.out}/state.pt - rerun with --resume",
              file=sys.stderr)
        return 130
    print(f"done: {result.step} steps; {what} in {result.out / what}"
          + (f"; {result.bad_steps} non-finite steps skipped" if result.bad_steps else ""))
    return 0


# --- evaluation: train-classifier, eval, sample, profile, report ---------------------------------------

def _add_evaluation_parsers(sub) -> None:
    from .config import ClassifierTrainConfig
    from .data import DATASETS

    p = sub.add_parser("train-classifier", help="train the Fashion-MNIST CNN used as the fmnist-cnn extractor")
    add_config_flags(p, ClassifierTrainConfig, choices={"data": DATASETS.names()})
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out holding files train-classifier did not make (never through a link)")

    p = sub.add_parser("eval", help="FID/KID/IS of generators under one protocol, PSNR/SSIM of students vs teacher")
    p.add_argument("paths", nargs="+", metavar="DIR", help="generator or GAN directories, or exported .onnx files "
                                                           "(run by onnxruntime on the CPU, float or --quantize int8)")
    _add_eval_flags(p)
    p.add_argument("--teacher", default=None, metavar="DIR",
                   help="pair every generator with this teacher (default: the evaluated teacher a student's "
                        "lineage names)")
    p.add_argument("--out", default=None, help="append results: .jsonl one line per generator, else a JSON list "
                                               "(only a file of eval's own results is extended)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out that does not hold eval results")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="cache real-image features under the protocol's digest (default: %(default)s)")
    p.add_argument("--reference", choices=("dataset", "teacher"), default="dataset",
                   help="what FID/KID compare against: real images of --dataset, or teacher: samples of --teacher "
                        "(default: the first DIR) from latents no evaluated generator sees, no dataset needed "
                        "(default: %(default)s)")
    p.set_defaults(extractor=None)
    for action in p._actions:
        if action.dest == "extractor":
            action.help = action.help.replace("(default: %(default)s)", "(default: fmnist-cnn; with --reference "
                                                                        "teacher and RGB generators: inception)")

    p = sub.add_parser("sample", help="a PNG grid of samples; --compare draws a second generator from the same z")
    p.add_argument("path", metavar="DIR", help="generator or GAN directory")
    p.add_argument("--num", type=int, default=64, help="images (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="latent seed, as in eval (default: %(default)s)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--compare", default=None, metavar="DIR2", help="second generator: its rows follow the first's")
    p.add_argument("--interpolate", action="store_true", help="rows of spherical latent interpolations")
    p.add_argument("--nrow", type=int, default=8, help="images per row (default: %(default)s)")
    p.add_argument("--scale", type=int, default=1, help="integer upscaling of the PNG (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out that is not a grid gandistill wrote")

    p = sub.add_parser("profile", help="params, MACs, latency, throughput, peak memory; speed-up of students")
    p.add_argument("paths", nargs="+", metavar="PATH", help="generator/GAN directories or exported .onnx files")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, or auto: the CPU and, when present, CUDA (default: %(default)s)")
    p.add_argument("--latency-runs", type=int, default=ProfileConfig.latency_runs,
                   help="timed batch-1 runs (default: %(default)s)")
    p.add_argument("--throughput-batch", type=int, default=ProfileConfig.throughput_batch,
                   help="batch size of the throughput runs (default: %(default)s)")
    p.add_argument("--throughput-runs", type=int, default=ProfileConfig.throughput_runs,
                   help="timed throughput runs (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=ProfileConfig.warmup, help="untimed runs first (default: %(default)s)")
    _add_rounds_flag(p)
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an --out that profile did not write")

    p = sub.add_parser("report", help="evaluate, profile and sample generators; write report.md/.json and a plot")
    p.add_argument("paths", nargs="+", metavar="DIR", help="teacher and student directories")
    p.add_argument("--out", default="report", help="report directory (default: %(default)s)")
    _add_eval_flags(p)
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                   help="time the generators (default: %(default)s)")
    p.add_argument("--latency-runs", type=int, default=ProfileConfig.latency_runs,
                   help="timed batch-1 runs (default: %(default)s)")
    p.add_argument("--throughput-batch", type=int, default=ProfileConfig.throughput_batch,
                   help="batch size of the throughput runs (default: %(default)s)")
    _add_rounds_flag(p)
    p.add_argument("--sample-num", type=int, default=64, help="images per sample grid, 0 = none (default: %(default)s)")
    p.add_argument("--title", default="gandistill: teacher vs students", help="report title")
    p.add_argument("--overwrite", action="store_true",
                   help="replace report files and grids in --out that a report did not write")


def _add_rounds_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=ProfileConfig.rounds,
                   help="the timed runs are split into this many rounds in which the models take turns; the "
                        "spread across rounds is reported and a speed-up it cannot support is called "
                        "inconclusive (at most one round per latency and per throughput run; 1 round has no "
                        "spread) (default: %(default)s)")


def _add_eval_flags(p: argparse.ArgumentParser) -> None:
    from .config import EvalConfig
    from .data import DATASETS
    from .metrics import EXTRACTORS

    p.add_argument("--dataset", choices=DATASETS.names(), default=EvalConfig.dataset,
                   help="real images (default: %(default)s)")
    p.add_argument("--split", choices=SPLITS, default=EvalConfig.split,
                   help="split of the real images (default: %(default)s)")
    p.add_argument("--metrics", type=_metric_list, default=list(EvalConfig.metrics),
                   help=f"comma-separated subset of {','.join(METRICS)} (default: {','.join(EvalConfig.metrics)})")
    p.add_argument("--extractor", choices=EXTRACTORS.names(), default=EvalConfig.extractor,
                   help="; ".join(f"{n}: {EXTRACTORS.get(n).description}" for n in EXTRACTORS)
                   + " (default: %(default)s)")
    p.add_argument("--extractor-weights", default=None, metavar="PATH",
                   help="weights of the extractor (fmnist-cnn: a classifier directory; inception: a .pth or "
                        ".safetensors file); default: the shipped/cached ones, never downloaded")
    p.add_argument("--num-samples", type=int, default=EvalConfig.num_samples,
                   help="generated images per generator; as many real images, at most the split's size "
                        "(default: %(default)s)")
    p.add_argument("--seed", "--seeds", dest="seed", type=_int_list, default=[EvalConfig.seed], metavar="SEEDS",
                   help="latent seed, or comma-separated seeds for mean ± std (default: 0)")
    p.add_argument("--device", default=EvalConfig.device, help="cpu or cuda (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=EvalConfig.batch_size,
                   help="images per forward pass (default: %(default)s)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset (default: search the usual places)")
    p.add_argument("--paired", type=int, default=EvalConfig.paired,
                   help="latents for PSNR/SSIM/feature distance of a student vs its teacher, 0 = off "
                        "(default: %(default)s)")


def _checked_eval_args(args) -> None:
    from .config import EvalConfig

    try:  # the dataclass validates: a bad value is a usage error (exit 2)
        EvalConfig(dataset=args.dataset, split=args.split, metrics=tuple(args.metrics),
                   extractor=args.extractor or EvalConfig.extractor,
                   num_samples=args.num_samples, seed=args.seed[0], device=args.device, batch_size=args.batch_size,
                   data_root=args.data_root, paired=args.paired)
        if any(not 0 <= s <= MAX_SEED for s in args.seed) or len(set(args.seed)) != len(args.seed):
            raise ValueError(f"seeds must be distinct integers in [0, {MAX_SEED}], got {args.seed}")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if getattr(args, "out", None) is not None:
        check_output(args.out, directory=args.command == "report")
        check_not_input(args.out, [*(("model", p) for p in args.paths), ("--teacher", getattr(args, "teacher", None)),
                                   ("--data-root", args.data_root), ("--extractor-weights", args.extractor_weights)])


def _seed_arg(seeds: list[int]):
    return seeds[0] if len(seeds) == 1 else seeds


def _cmd_train_classifier(args) -> int:
    from .config import ClassifierTrainConfig
    from .train_classifier import train_classifier

    result = _run_into_out(config_from_args(ClassifierTrainConfig, args),
                           lambda config: train_classifier(config, overwrite=args.overwrite))
    print(f"done: test accuracy {result.test_accuracy:.4f} after {len(result.history)} epochs "
          f"({result.wall_time_s / 60:.1f} min); classifier in {result.out}")
    return 0


def _cmd_eval(args) -> int:
    from .metrics import evaluate
    from .report import protocol_line

    _checked_eval_args(args)
    results = evaluate(args.paths, dataset=args.dataset, split=args.split, metrics=args.metrics,
                       extractor=args.extractor, num_samples=args.num_samples, seed=_seed_arg(args.seed),
                       device=args.device, batch_size=args.batch_size, data_root=args.data_root,
                       extractor_weights=args.extractor_weights, paired=args.paired, teacher=args.teacher,
                       out=args.out, cache=args.cache, reference=args.reference, overwrite=args.overwrite)
    print(f"protocol: {protocol_line(results[0]['protocol'])}")
    for r in results:
        parts = []
        for key, value in r["metrics"].items():
            std = r.get("metrics_std", {}).get(key)
            parts.append(f"{key} unavailable" if value is None
                         else f"{key} {value:.4g}" + (f" ± {std:.2g}" if std is not None else ""))
        print(f"{r['model']}: " + ", ".join(parts))
        if r.get("paired"):
            pf = r["paired"]
            print(f"  vs teacher {pf['teacher']} (same z, {pf['num']} latents): PSNR {pf['psnr']:.2f} dB, "
                  f"SSIM {pf['ssim']:.4f}" + (f", feature L2 {pf['feature_l2']:.4g}" if "feature_l2" in pf else ""))
    for note in dict.fromkeys(n for r in results for n in r["notes"]):
        print(f"note: {note}")
    if args.out:
        print(f"results appended to {args.out}")
    return 0


def _cmd_sample(args) -> int:
    from .samples import sample

    if args.num < 1 or args.nrow < 1 or args.scale < 1:
        raise UsageError("--num, --nrow and --scale must be positive")
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be in [0, {MAX_SEED}], got {args.seed}")
    check_output(args.out, directory=False)
    images = sample(args.path, num=args.num, seed=args.seed, compare=args.compare, interpolate=args.interpolate,
                    nrow=args.nrow, out=args.out, scale=args.scale, overwrite=args.overwrite)
    print(f"wrote {args.out}: {images.shape[0]} images, seed {args.seed}"
          + (f", {args.path} rows interleaved with {args.compare} rows" if args.compare else ""))
    return 0


def _cmd_profile(args) -> int:
    import json
    from pathlib import Path

    import torch

    from .checkpoint import atomic_write
    from .config import ProfileConfig
    from .profile import attach_speedups, profile_models

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" else [args.device]
    try:
        for device in devices:
            ProfileConfig(device=device, latency_runs=args.latency_runs, throughput_batch=args.throughput_batch,
                          throughput_runs=args.throughput_runs, warmup=args.warmup, rounds=args.rounds)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.out:
        check_output(args.out, directory=False)
        check_not_input(args.out, [("model", p) for p in args.paths])
        check_file_target(args.out, overwrite=args.overwrite, made_here=_is_profile_json)
    results = []
    for device in devices:
        timing = dict(device=device, latency_runs=args.latency_runs, throughput_batch=args.throughput_batch,
                      throughput_runs=args.throughput_runs, warmup=args.warmup, rounds=args.rounds)
        paths = [p for p in args.paths if device == "cpu" or not p.endswith(".onnx")]
        # every model, PyTorch or .onnx (onnxruntime, CPU only), is timed in the same interleaved rounds, so
        # that their speed-ups compare like with like
        results += attach_speedups(profile_models(paths, **timing)) if paths else []
    for r in results:
        line = f"{r['model']}: "
        if "params" in r:
            line += f"{r['params']:,} params, {r['macs']:,} MACs/img, "
        if "latency_ms_p50" in r:
            line += f"latency p50 {r['latency_ms_p50']:.2f} ms / p90 {r['latency_ms_p90']:.2f} ms (batch 1"
            if r.get("rounds", 1) > 1:
                low, high = r["latency_ms_spread"]
                line += f"; rounds p10-p90 {low:.2f}-{high:.2f} ms"
            line += "), "
        if "throughput_img_s" in r:
            line += f"{r['throughput_img_s']:.0f} img/s (batch {r.get('throughput_batch', '?')})"
        if r.get("peak_memory_mb") is not None:
            line += f", peak {r['peak_memory_mb']:.2f} MiB"
        print(line + f" [{r.get('device')}]")
        sp = r.get("speedup")
        if sp and sp.get("inconclusive"):
            print(f"  vs teacher {sp['teacher']}: {sp['inconclusive']}; {sp['mac_ratio']:.2f}x fewer MACs, "
                  f"{sp['param_ratio']:.2f}x fewer params")
        elif sp:  # per-round ratios where both were timed in the same rounds
            print(f"  vs teacher {sp['teacher']}: {sp.get('latency_speedup_paired', sp['latency_speedup']):.2f}x "
                  f"latency, {sp.get('throughput_speedup_paired', sp['throughput_speedup']):.2f}x throughput; "
                  f"{sp['mac_ratio']:.2f}x fewer MACs, {sp['param_ratio']:.2f}x fewer params")
    if args.out:
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2) + "\n"))
        print(f"wrote {args.out}")
    return 0


def _is_profile_json(path: Path) -> bool:
    """Whether ``path`` holds what profile --out writes: a JSON list of profile records, each with its timings and
    their settings (a list that merely names models and devices is someone else's)."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(data, list) and bool(data) and all(
        isinstance(r, dict) and PROFILE_RECORD_KEYS <= set(r) for r in data)


PROFILE_RECORD_KEYS = frozenset({"model", "device", "latency_ms_p50", "latency_ms_p90", "latency_runs",
                                 "throughput_img_s", "throughput_batch", "warmup"})  # torch and onnx records alike


def _cmd_report(args) -> int:
    from .report import make_report

    _checked_eval_args(args)
    if args.sample_num < 0 or args.latency_runs < 1 or args.throughput_batch < 1 or args.rounds < 1:
        raise UsageError("--sample-num must be >= 0, --latency-runs, --throughput-batch and --rounds positive")
    with removed_if_failed(args.out):
        paths = make_report(args.paths, out=args.out, dataset=args.dataset, split=args.split, metrics=args.metrics,
                            extractor=args.extractor, num_samples=args.num_samples, seed=_seed_arg(args.seed),
                            device=args.device, batch_size=args.batch_size, data_root=args.data_root,
                            extractor_weights=args.extractor_weights, paired=args.paired, profile=args.profile,
                            latency_runs=args.latency_runs, throughput_batch=args.throughput_batch,
                            rounds=args.rounds, sample_num=args.sample_num, title=args.title,
                            overwrite=args.overwrite)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


COMMANDS = {"info": _cmd_info, "train": _cmd_train, "distill": _cmd_distill, "demo": _cmd_demo,
            "import": _cmd_import, "search": _cmd_search}
COMMANDS.update({"train-classifier": _cmd_train_classifier, "eval": _cmd_eval, "sample": _cmd_sample,
                 "profile": _cmd_profile, "report": _cmd_report})


# --- export --------------------------------------------------------------------------------------------

def _add_export_parser(sub) -> None:
    import inspect

    from .export import FORMATS, QUANTIZATIONS, export
    from .onnx_forms import LAYER_FORMS

    defaults = {name: p.default for name, p in inspect.signature(export).parameters.items()}
    p = sub.add_parser("export", help="export a generator (safetensors, TorchScript, ONNX), checked against PyTorch")
    p.add_argument("model", help="a model directory or a GAN directory (its generator is exported)")
    p.add_argument("--format", choices=FORMATS.names(), default=defaults["format"],
                   help="; ".join(f"{n}: {FORMATS.get(n).description}" for n in FORMATS) + " (default: %(default)s)")
    p.add_argument("--out", required=True, help="file to write (directory for safetensors)")
    p.add_argument("--uint8", action="store_true",
                   help="output uint8 images [N, H, W, C] ready to save (torchscript, onnx)")
    p.add_argument("--atol", type=float, default=defaults["atol"],
                   help="largest allowed |export - pytorch| in [-1, 1] image units (default: %(default)s)")
    p.add_argument("--batch-sizes", dest="batch_sizes", type=int, nargs="+", default=list(defaults["batch_sizes"]),
                   metavar="N", help="batch sizes of the check, 1 included (default: %(default)s)")
    p.add_argument("--seed", type=int, default=defaults["seed"],
                   help="seed of the check's random z (default: fresh, recorded in export.json)")
    p.add_argument("--quantize", choices=QUANTIZATIONS.names(), default=defaults["quantize"],
                   help="; ".join(f"{n}: {QUANTIZATIONS.get(n).description}" for n in QUANTIZATIONS)
                   + " (onnx only; default: float)")
    p.add_argument("--min-psnr", dest="min_psnr", type=float, default=defaults["min_psnr"],
                   help="with --quantize: fail when the quantised images' mean PSNR vs the float graph's, in dB on "
                        "[-1, 1], is below this (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out (or export.json) that is not an earlier export recorded in export.json")
    p.add_argument("--truncation-psi", dest="truncation_psi", type=float, default=None,
                   help="stylegan2: draw w_avg + psi (w - w_avg), fixed in the file (default: the model's, 1)")
    p.add_argument("--truncation-cutoff", dest="truncation_cutoff", type=int, default=None,
                   help="stylegan2: truncate only the first N styles (default: all)")
    p.add_argument("--noise-mode", dest="noise_mode", choices=("const", "none"), default=None,
                   help="stylegan2: the stored noise (const, default) or none, fixed in the file")
    p.add_argument("--layer-forms", dest="layer_forms", choices=LAYER_FORMS, default=defaults["layer_forms"],
                   help="onnx: measure = each upsampling layer in its fastest exact form on this machine (recorded "
                        "in export.json), or one form for all (default: %(default)s)")


def _cmd_export(args) -> int:
    from .export import ExportArgumentError, ExportError, export

    try:
        result = export(args.model, format=args.format, out=args.out, uint8=args.uint8, atol=args.atol,
                        batch_sizes=tuple(args.batch_sizes), seed=args.seed, overwrite=args.overwrite,
                        quantize=args.quantize, min_psnr=args.min_psnr, truncation_psi=args.truncation_psi,
                        truncation_cutoff=args.truncation_cutoff, noise_mode=args.noise_mode,
                        layer_forms=args.layer_forms)
    except ExportArgumentError as e:
        raise UsageError(str(e)) from None
    except ExportError as e:  # a failed check or a missing extra: a failure, not a usage error
        if args.debug:
            raise
        print(f"gandistill export: error: {e}", file=sys.stderr)
        return 1
    kind = "".join(f" ({k})" for k in (args.quantize, "uint8" if args.uint8 else None) if k)
    print(f"exported {args.format}{kind}: {result.path}")
    print(f"{result.summary()}; recorded in {result.report}")
    if result.speed_verdict:  # measured on this machine: what int8 buys here, said where it cannot be missed
        print(f"gandistill export: {result.speed_verdict}", file=sys.stderr)
    return 0


COMMANDS.update({"export": _cmd_export, **cli_shipping.COMMANDS})


def one_line(error: BaseException) -> str:
    """An exception's message on one line (some libraries write several)."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UsageError, OutputRefused) as e:  # a refused output path is the command line's to change
        if args.debug:
            raise
        print(f"gandistill {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # bad files, missing data, full disks: failures, not usage errors
        if args.debug:
            raise
        print(f"gandistill {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a bug still gets one line; --debug shows where
        if args.debug:
            raise
        print(f"gandistill {args.command}: error: unexpected {type(e).__name__}: {one_line(e)} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
