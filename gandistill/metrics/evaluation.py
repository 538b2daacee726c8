"""FID / KID / IS through torch-fidelity, paired fidelity against a teacher, feature extractors, stats cache.

This is the only module that imports torch_fidelity. Generators are wrapped in torch-fidelity's
``GenerativeModelModuleWrapper`` (around a module that turns [-1, 1] images into uint8 RGB) and their
features are extracted by torch-fidelity; the FID and IS formulas are torch-fidelity's own, and KID is
torch-fidelity's estimator on the subsets it draws, computed here with fewer multiply-adds (`kid`).

Protocol: every generator evaluated together sees the same latents (numpy ``RandomState(seed)``, as
torch-fidelity draws them) and the same real-image features, cached under a digest of (dataset, split,
count, resolution, the real images, extractor, extractor weights sha256). Metric names carry the
protocol: ``fid10k[fmnist-cnn]``, ``kid2k[inception]``.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..checkpoint import (
    atomic_write,
    from_pretrained,
    read_config,
    resolve_model_dir,
)
from ..config import EvalConfig, width_tag
from ..models import for_inference, kind_of
from ..onnx_generator import OnnxGenerator, device_of, is_onnx_path, params_and_macs
from ..outputs import OutputRefused, check_file_target, open_append, record_lock
from ..profile import teacher_pairs
from .cache import real_features, real_images
from .extractors import (
    IS_UNAVAILABLE,
    Extractor,
    ToUint8RGB,
    extract_features,
    fidelity,
    make_extractor,
    resolve_extractor,
)
from .kid_math import kid
from .paired import _paired_record, _psnr_ssim, paired_fidelity

FID_BIAS_NOTE = ("FID is biased upward below ~10k samples: compare FIDs only at equal counts, and prefer KID "
                 "(unbiased) for small counts")


def metric_key(metric: str, num_samples: int, extractor: str) -> str:
    """``fid10k[fmnist-cnn]``: the metric, its sample count (``Nk`` when divisible by 1000) and extractor."""
    count = f"{num_samples // 1000}k" if num_samples % 1000 == 0 else str(num_samples)
    return f"{metric}{count}[{extractor}]"


def _scores(fake: dict[str, torch.Tensor], real_feats: torch.Tensor | None, real_stats: dict | None,
            wanted: Sequence[str], spec: Extractor, num_samples: int, seed: int,
            kid_memo: dict | None = None, reference: str = "dataset") -> tuple[dict, dict, int]:
    """({metric key: value}, {metric key: spread within the run}, KID subset size) by torch-fidelity's formulas.

    kid_memo: a dict kept with ``real_feats`` across generators (see `kid`). reference: "teacher" names FID/KID
    ``fid2k[inception,vs-teacher]``: a score against a teacher's samples is not one against real images.
    """
    tf = fidelity()
    values, spread, subset = {}, {}, 0
    layer = spec.layer("fid")
    label = spec.name if reference == "dataset" else f"{spec.name},vs-{reference}"
    if "fid" in wanted:
        fid = tf.fid_from_statistics(tf.fid_statistics(fake[layer]), real_stats, False)
        values[metric_key("fid", num_samples, label)] = fid[tf.KEY_FID]
    if "kid" in wanted:
        subset = min(1000, num_samples, real_feats.shape[0])
        key = metric_key("kid", num_samples, label)
        values[key], spread[key] = kid(fake[layer], real_feats, subset, seed, memo=kid_memo)
    if "is" in wanted:
        isc = tf.isc(fake[spec.layer("isc")], splits=min(10, num_samples), shuffle=True, rng_seed=seed)
        key = metric_key("is", num_samples, spec.name)
        values[key], spread[key] = isc[tf.KEY_IS], isc[tf.KEY_IS_STD]
    return values, spread, subset


def image_metrics(images, reference: torch.Tensor, metrics: Sequence[str] = ("fid", "kid"),
                  extractor: str = EvalConfig.extractor, extractor_weights: str | os.PathLike | None = None,
                  batch_size: int = EvalConfig.batch_size, device: str = EvalConfig.device, seed: int = 0) -> dict:
    """FID/KID/IS of uint8 images [N, 1|3, H, W] against reference images, as evaluate() computes them.

    For checks and baselines (real train vs real test, noise, degraded images). ``images`` may also be a dict
    name -> images: then the result is name -> metrics, with the reference's features extracted once. IS needs
    logits and comes back None when the extractor has none. Keys carry the protocol, e.g. ``fid2k[fmnist-cnn]``.
    """
    def rgb(x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 [N, 1|3, H, W], got {getattr(x, 'dtype', type(x))} "
                             f"{list(getattr(x, 'shape', []))}")
        return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x

    sets = images if isinstance(images, dict) else {None: images}
    spec, weights = resolve_extractor(extractor, extractor_weights)
    wanted = [m for m in dict.fromkeys(metrics) if m != "is" or weights.has_logits]
    layers = [spec.layer("fid")] + ([spec.layer("isc")] if "is" in wanted else [])
    extractor_obj = make_extractor(extractor, weights, layers, device)
    real = extract_features(rgb(reference), extractor_obj, batch_size, device)[spec.layer("fid")]
    stats = fidelity().fid_statistics(real)
    out, kid_memo = {}, {}
    for name, imgs in sets.items():
        fake = extract_features(rgb(imgs), extractor_obj, batch_size, device)
        values, _, _ = _scores(fake, real, stats, wanted, spec, imgs.shape[0], seed, kid_memo)
        if "is" in metrics and "is" not in wanted:
            values[metric_key("is", imgs.shape[0], extractor)] = None
        out[name] = values
    return out if isinstance(images, dict) else out[None]


def _load_generators(generators, names) -> tuple[list[nn.Module], list[str]]:
    if isinstance(generators, (nn.Module, str, os.PathLike)):
        generators = [generators]
    models, labels = [], []
    for i, g in enumerate(generators):
        if is_onnx_path(g):
            model, label = OnnxGenerator(g), str(g)
        elif isinstance(g, (str, os.PathLike)):
            model, label = from_pretrained(g, "generator"), str(g)
        elif isinstance(g, OnnxGenerator):
            model, label = g, g.source
        elif isinstance(g, nn.Module):
            if kind_of(g) != "generator":
                raise ValueError(f"generator {i}: got a {kind_of(g)}, expected a generator")
            model = g
            label = getattr(g, "source", None) or f"{g.family}-{width_tag(g.config)}" + (f"-{i}" if i else "")
        else:
            raise TypeError(f"generator {i}: expected a module or a directory, got {type(g).__name__}")
        models.append(model)
        labels.append(label)
    if names is not None:
        if len(names) != len(models):
            raise ValueError(f"names: {len(names)} given for {len(models)} generators")
        labels = [str(n) for n in names]
    if len(set(labels)) != len(labels):
        raise ValueError(f"generators need distinct names, got {labels}; pass names=[...]")
    return models, labels


def _same_model(a: nn.Module, b: nn.Module) -> bool:
    """Whether two loaded generators are one model: the same object, file or folder, or the same weights."""
    if a is b:
        return True
    source_a, source_b = getattr(a, "source", None), getattr(b, "source", None)
    if source_a and source_b and os.path.realpath(source_a) == os.path.realpath(source_b):
        return True
    sha_a, sha_b = getattr(a, "weights_sha256", None), getattr(b, "weights_sha256", None)
    return bool(sha_a) and sha_a == sha_b and a.family == b.family and a.config == b.config


def _seeds(seed) -> list[int]:
    seeds = [seed] if isinstance(seed, int) and not isinstance(seed, bool) else list(seed)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seed must be a non-negative int or a list of them, got {seed!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    return seeds


def _teacher_label(teacher, models: list, labels: list[str]) -> str:
    """The name a paired teacher goes by: its label when it is also evaluated, else its path or description."""
    for model, label in zip(models, labels, strict=True):
        if model is teacher:
            return label
    if isinstance(teacher, (str, os.PathLike)):
        return str(teacher)
    return getattr(teacher, "source", None) or f"{teacher.family}-{width_tag(teacher.config)}"


PROGRESS_DELAY_S = 3.0  # an evaluation pass shows its progress bar once it has run this long
FEATURE_BYTES_PER_SAMPLE = 4 * (2048 + 1008)  # float32 features of the widest extractor (Inception pool3 + logits)


def _check_fits_in_memory(num_samples: int) -> None:
    """Features of every generated image are held until the scores are computed: refuse a count whose features
    alone would not fit in this machine's memory, before any image is made (1e12 samples ran unbounded)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no bound but the config's
        return
    need = num_samples * FEATURE_BYTES_PER_SAMPLE
    if need > memory // 2:
        most = memory // 2 // FEATURE_BYTES_PER_SAMPLE
        raise ValueError(f"num_samples {num_samples:,}: its features alone need {need / 2**30:,.0f} GiB, more than "
                         f"half of this machine's {memory / 2**30:,.0f} GiB; use at most {most:,} samples")


REFERENCES = ("dataset", "teacher")


def trained_on(model, weights_sha256: str) -> list[str]:
    """The loss terms that trained ``model`` on features of the network with these weights (its lineage's
    ``loss_networks``, which distill() records); [] when none did or the model has no lineage."""
    networks = (getattr(model, "lineage", None) or {}).get("loss_networks", [])
    return [t for n in networks if n.get("weights_sha256") == weights_sha256 for t in n.get("terms", [])]


def default_extractor(reference: str, channels: int) -> str:
    """The extractor when none is named: Inception for RGB against a teacher's samples (the usual FID features
    for images of any kind), else the project's default."""
    return "inception" if reference == "teacher" and channels == 3 else EvalConfig.extractor


def evaluate(generators, dataset: str = EvalConfig.dataset, split: str = EvalConfig.split,
             metrics: Sequence[str] = EvalConfig.metrics, extractor: str | None = None,
             num_samples: int = EvalConfig.num_samples, seed: int | Sequence[int] = EvalConfig.seed,
             device: str = EvalConfig.device, batch_size: int = EvalConfig.batch_size,
             data_root: str | os.PathLike | None = EvalConfig.data_root, *,
             extractor_weights: str | os.PathLike | None = None, paired: int = EvalConfig.paired,
             teacher=None, names: Sequence[str] | None = None, out: str | os.PathLike | None = None,
             cache: bool = True, verbose: bool = False, reference: str = "dataset",
             overwrite: bool = False) -> list[dict]:
    """FID/KID/IS of each generator under one protocol, plus PSNR/SSIM/feature distance of students vs teacher.

    generators: modules, model directories or ``.onnx`` exports (run by onnxruntime on the CPU, see
    `OnnxGenerator`). seed: one seed or several (then mean and std across seeds).
    teacher: a module or directory to pair every generator with; by default a student is paired with the
    evaluated generator its lineage names as teacher. out: ``.jsonl`` appends one line per generator,
    any other name a JSON list (appended to when the file exists and holds only eval results; ``overwrite``
    replaces any other file there). Returns one record per generator.
    reference: "dataset" (real images of ``dataset``/``split``) or "teacher": no dataset needed, the reference
    images are ``num_samples`` samples of ``teacher`` (default: the first generator) drawn at seed
    max(seeds) + 1, apart from every evaluated latent. extractor: None picks `default_extractor`.
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be dataset or teacher, got {reference!r}")
    seeds = _seeds(seed)
    if out is not None:  # before any work: a results file eval may not extend fails now, not after the evaluation
        check_results_target(out, overwrite)
    # an exported .onnx file is loaded once here, so the extractor default, labels and pairing all see a module
    generators = [OnnxGenerator(g) if is_onnx_path(g) else g
                  for g in (generators if isinstance(generators, (list, tuple)) else [generators])]
    teacher = OnnxGenerator(teacher) if is_onnx_path(teacher) else teacher
    if extractor is None:
        first_model = generators[0] if isinstance(generators, (list, tuple)) and generators else generators
        if reference == "teacher" and teacher is not None:
            first_model = teacher
        channels = (first_model.config.channels if isinstance(first_model, nn.Module)
                    else read_config(resolve_model_dir(first_model))["config_obj"].channels)
        extractor = default_extractor(reference, channels)
    cfg = EvalConfig(dataset=dataset, split=split, metrics=tuple(metrics), extractor=extractor,
                     num_samples=num_samples, seed=seeds[0], device=device, batch_size=batch_size,
                     data_root=None if data_root is None else str(data_root), paired=paired)
    _check_fits_in_memory(cfg.num_samples)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    models, labels = _load_generators(generators, names)
    teacher_model = None
    if teacher is not None:
        teacher_model = from_pretrained(teacher, "generator") if isinstance(teacher, (str, os.PathLike)) else teacher
        listed = next((k for k, m in enumerate(models) if _same_model(m, teacher_model)), None)
        if listed is not None:  # the teacher is also evaluated: that one, never paired with itself
            teacher_model = models[listed]
    reference_model = (teacher_model if teacher_model is not None else models[0]) if reference == "teacher" else None
    spec, weights = resolve_extractor(cfg.extractor, extractor_weights)
    tf = fidelity()

    # --- which metrics, which layers ---
    wanted = list(dict.fromkeys(cfg.metrics))
    notes = []
    if "is" in wanted and not weights.has_logits:
        wanted.remove("is")
        notes.append(f"{IS_UNAVAILABLE} ({cfg.extractor}: {weights.source})")
    if "fid" in wanted and cfg.num_samples < 10_000:
        notes.append(FID_BIAS_NOTE)
    feat_layer = spec.layer("fid")
    layers = ([feat_layer] if {"fid", "kid"} & set(wanted) or cfg.paired else []) + \
        ([spec.layer("isc")] if "is" in wanted else [])
    if not layers:
        raise ValueError(f"nothing to compute: metrics {list(cfg.metrics)} with extractor {cfg.extractor}")
    extractor_obj = make_extractor(cfg.extractor, weights, layers, cfg.device)
    cuda = cfg.device.startswith("cuda")

    protocol = {"dataset": cfg.dataset, "split": cfg.split, "num_samples": cfg.num_samples,
                "extractor": cfg.extractor, "weights_sha256": weights.sha256, "weights_source": weights.source,
                "seeds": seeds, "latents": "numpy RandomState(seed).randn(num_samples, z_dim)",
                "torch_fidelity": tf.version, "reference": reference}
    reals: dict[tuple[int, int], tuple] = {}
    if reference_model is not None and {"fid", "kid"} & set(wanted):
        # --- reference: the teacher's own samples, from latents no evaluated generator sees ---
        reference_label = _teacher_label(teacher if teacher is not None else reference_model, models, labels)
        reference_seed = max(seeds) + 1
        ref_res, ref_ch = reference_model.config.resolution, reference_model.config.channels
        for model, label in zip(models, labels, strict=True):
            if (model.config.resolution, model.config.channels) != (ref_res, ref_ch):
                raise ValueError(f"{label} draws {model.config.resolution} px, {model.config.channels} channel(s); "
                                 f"the reference teacher {reference_label} draws {ref_res} px, {ref_ch}")
        device_before = device_of(reference_model)
        was_training = reference_model.training
        try:
            served = for_inference(reference_model.to(cfg.device).eval())
            wrapped = tf.GenerativeModelModuleWrapper(ToUint8RGB(served), reference_model.z_dim, "normal", 0)
            ref_feats = tf.features_from_generator(wrapped, extractor_obj, cfg.num_samples, cfg.batch_size, cuda,
                                                   reference_seed, verbose)[feat_layer]
        finally:
            reference_model.train(was_training).to(device_before)
        reals[(ref_res, ref_ch)] = (ref_feats, tf.fid_statistics(ref_feats), None, cfg.num_samples, {})
        protocol.update(dataset=f"teacher:{reference_label}", split=f"seed{reference_seed}",
                        reference_seed=reference_seed)
        notes.append(f"reference: {cfg.num_samples} samples of the teacher {reference_label} at seed "
                     f"{reference_seed}; the teacher's own score against them is the floor of this protocol")
    records = []
    # paired fidelity runs on the first `paired` latents of seeds[0], which the FID pass has just drawn: keep
    # those images and features instead of generating and extracting them again. Only when the pass's batches
    # cover them exactly as paired_fidelity's would, so the numbers are the same as recomputing them.
    fid_batch = min(cfg.batch_size, cfg.num_samples)
    reuse = cfg.paired if cfg.paired and cfg.paired <= cfg.num_samples and (
        cfg.paired == cfg.num_samples or (fid_batch == cfg.batch_size and cfg.paired % cfg.batch_size == 0)) else 0
    first: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # model index -> (uint8 images, features)
    for index, (model, label) in enumerate(zip(models, labels, strict=True)):
        device_before = device_of(model)
        was_training = model.training
        model.to(cfg.device).eval()
        try:
            res, ch = model.config.resolution, model.config.channels
            if {"fid", "kid"} & set(wanted) and (res, ch) not in reals:
                images = real_images(cfg.dataset, cfg.split, cfg.num_samples, res, ch, cfg.data_root)
                reals[(res, ch)] = real_features(images, protocol, extractor_obj, feat_layer, cfg.batch_size,
                                                 cfg.device, cache) + (images.shape[0], {})
            real_feats, real_stats, cache_path, num_real, kid_memo = reals.get((res, ch), (None, None, None, 0, None))
            per_seed, spread = {}, {}
            served = for_inference(model)  # the same images, faster (DCGAN: batch norm folded)
            for s in seeds:
                # a bar on stderr for any pass that takes more than a few seconds (tqdm's delay)
                with tqdm(total=cfg.num_samples, desc=f"eval {label} seed {s}", unit="img", delay=PROGRESS_DELAY_S,
                          leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=1.0) as bar:
                    to_rgb = ToUint8RGB(served, keep=reuse if s == seeds[0] else 0, progress=bar)
                    wrapped = tf.GenerativeModelModuleWrapper(to_rgb, model.z_dim, "normal", 0)
                    fake = tf.features_from_generator(wrapped, extractor_obj, cfg.num_samples, cfg.batch_size,
                                                      cuda, s, verbose)
                if to_rgb.keep:
                    first[index] = (torch.cat(to_rgb.kept), fake[feat_layer][:reuse])
                values, spread_s, subset = _scores(fake, real_feats, real_stats, wanted, spec, cfg.num_samples, s,
                                                   kid_memo, reference)
                spread.update(spread_s)
                if subset:
                    protocol["kid_subset_size"] = subset
                per_seed[s] = values
            keys = list(per_seed[seeds[0]])
            mean = {k: float(np.mean([per_seed[s][k] for s in seeds])) for k in keys}
            per_block = list(getattr(model.config, "layer_channels", ()))
            record = {"model": label, "family": model.family,
                      "width": None if per_block else float(model.config.width),
                      **({"layer_channels": per_block} if per_block else {}),
                      **dict(zip(("params", "macs"), params_and_macs(model), strict=True)),
                      "protocol": {**protocol, "num_real": num_real,
                                   "resolution": res, "real_cache": str(cache_path) if cache_path else None},
                      "metrics": mean, "spread": spread if len(seeds) == 1 else {}, "paired": None,
                      "notes": list(notes)}
            if terms := trained_on(model, weights.sha256):
                record["notes"].append(f"{label} was trained with {' and '.join(terms)} on these {cfg.extractor} "
                                       f"weights' features: its {cfg.extractor} scores are no independent judge of "
                                       f"it (evaluate it with another extractor too, e.g. inception)")
            if isinstance(model, OnnxGenerator):
                record["runtime"] = "onnxruntime CPUExecutionProvider"
                record["quantize"] = model.quantize
            if num_real and num_real < cfg.num_samples:
                record["notes"].append(f"real statistics come from all {num_real} images of {cfg.dataset}/{cfg.split}"
                                       f", fewer than the {cfg.num_samples} generated")
            if "is" in cfg.metrics and "is" not in wanted:
                record["metrics"][metric_key("is", cfg.num_samples, cfg.extractor)] = None
            if len(seeds) > 1:
                record["metrics_std"] = {k: float(np.std([per_seed[s][k] for s in seeds])) for k in keys}
                record["per_seed"] = {str(s): v for s, v in per_seed.items()}
            records.append(record)
        finally:
            model.train(was_training)
            model.to(device_before)

    # --- paired fidelity: each student vs its teacher, the same z ---
    if cfg.paired:
        pairs = ({i: (-1, "teacher") for i, m in enumerate(models) if m is not teacher_model}
                 if teacher_model is not None else teacher_pairs(models))
        for i, (j, how) in pairs.items():
            t = teacher_model if j == -1 else models[j]
            t_index = next((k for k, m in enumerate(models) if m is t), None)  # an explicit teacher may be evaluated
            if i in first and t_index in first:
                if models[i].z_dim != t.z_dim:
                    raise ValueError(f"student z_dim {models[i].z_dim} differs from the teacher's {t.z_dim}")
                (s_img, fs), (t_img, ft) = first[i], first[t_index]
                psnr, ssim = [], []
                _psnr_ssim(s_img, t_img, models[i].config.channels == 1, psnr, ssim)
                pf = _paired_record(cfg.paired, seeds[0], psnr, ssim, [(fs - ft).norm(dim=1)])
            else:
                s_dev, t_dev = device_of(models[i]), device_of(t)
                try:
                    models[i].to(cfg.device)
                    t.to(cfg.device)
                    pf = paired_fidelity(models[i], t, cfg.paired, seeds[0], cfg.batch_size, extractor_obj,
                                         feat_layer, cfg.device)
                finally:
                    models[i].to(s_dev)
                    t.to(t_dev)
            listed = j if j >= 0 else next((k for k, m in enumerate(models) if m is teacher_model), None)
            pf["teacher"] = labels[listed] if listed is not None else _teacher_label(teacher, models, labels)
            pf["paired_by"] = how  # "teacher" (the teacher argument), "sha256" or "config" (the lineage)
            pf["feature_layer"] = f"{cfg.extractor}:{feat_layer}"
            records[i]["paired"] = pf

    if out is not None:
        append_results(records, out, overwrite)
    return records


EVAL_RECORD_KEYS = frozenset({"model", "metrics", "protocol"})  # what every evaluate() record holds


def _read_results(out: Path) -> list[dict] | None:
    """The records of a results file evaluate() wrote (JSON lines for .jsonl, else a JSON list); None for a file of
    any other content: eval extends only its own records."""
    try:
        text = out.read_text()
        if out.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text) if text.strip() else []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(records, list) or not all(isinstance(r, dict) and EVAL_RECORD_KEYS <= set(r) for r in records):
        return None
    return records


def check_results_target(out: str | os.PathLike, overwrite: bool = False, flag: str = "--out") -> None:
    """Before any work: ``out`` is new or a regular file of eval results; ``overwrite`` replaces anything else but
    a folder or FIFO (a link is replaced, never written through): ``outputs.check_file_target``'s rule."""
    out = Path(out)
    if not out.is_symlink() and out.exists() and not out.is_file():
        # a FIFO would block the write forever; a folder or device is no results file
        raise OutputRefused(f"{flag} {out}: is not a regular file; choose another {flag}")
    check_file_target(out, overwrite=overwrite, made_here=lambda path: _read_results(path) is not None, flag=flag,
                      kind="eval results (eval extends only its own records)")


def append_results(records: list[dict], out: str | os.PathLike, overwrite: bool = False) -> Path:
    """``.jsonl``: append one line per record; otherwise a JSON list, extended when the file exists.

    Only a file of eval's own records is extended (see `check_results_target`); the read-modify-write happens under
    `record_lock`, so simultaneous evaluations keep every record."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with record_lock(out):
        check_results_target(out, overwrite)
        existing = None if out.is_symlink() or not out.is_file() else _read_results(out)
        if out.suffix == ".jsonl" and existing is not None:
            with open_append(out) as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
            return out
        data = (existing or []) + records
        text = ("".join(json.dumps(r) + "\n" for r in data) if out.suffix == ".jsonl"
                else json.dumps(data, indent=2) + "\n")
        atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    return out
