"""Property-based checks (hypothesis) of config validation and of the CLI's handling of bad flag values.

A config built from any values is either valid (and survives a JSON round trip) or raises one ValueError
that starts with the name of a field; never another exception. A CLI flag with a bad value exits 2 with
exactly one line on stderr, no traceback, and no output directory. Set GANDISTILL_PROPERTY_EXAMPLES to
explore more (e.g. 2000) than the quick default.
"""
import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import tempfile
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gandistill import config as C
from gandistill.cli import build_parser, main

EXAMPLES = int(os.environ.get("GANDISTILL_PROPERTY_EXAMPLES", "0"))
CONFIGS = [C.DCGANConfig, C.StyleGAN2Config, C.ClassifierConfig, C.TrainConfig, C.DistillConfig,
           C.ClassifierTrainConfig, C.EvalConfig, C.ProfileConfig, C.DemoConfig]
CROSS_FIELD = {"classifier", "disc_batch"}  # rules about several fields name the one to change (disc_batch: DemoConfig's 8 > a batch_size of 1)

NAMES = ["cpu", "cuda", "cuda:1", "cuda:x", "tpu", "dcgan", "stylegan2", "biggan", "hinge", "wgan", "l1", "mse",
         "l1+mse", "prefix", "best", "train", "test", "val", "fashion-mnist", "synthetic", "none", "onnx", "fid",
         "kid", "is", "", " ", "\x00", "runs/x", "a\nb"]
WILD = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-3, max_value=70), st.sampled_from([2**63, -2**63 - 1, 10**400]),
    st.floats(), st.floats(min_value=-1.5, max_value=1.5), st.sampled_from([math.nan, math.inf, -math.inf, 1e308]),
    st.text(max_size=8), st.sampled_from(NAMES),
    st.lists(st.integers(), max_size=3), st.tuples(st.sampled_from(["fid", "kid", "is", "x"])),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(np.float32, st.floats(width=32)), st.builds(np.int64, st.integers(-2**63, 2**63 - 1)),
    st.builds(Path, st.sampled_from(["runs/p", "", "."])),
)


def _settings(n: int):
    return settings(max_examples=max(n, EXAMPLES), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _typed(hint) -> st.SearchStrategy:
    """Values of roughly the right type, often out of range: these reach the range checks."""
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    if base is bool:
        return st.booleans()
    if base is int:
        return st.one_of(st.integers(-5, 100), st.integers(0, 2**33), st.integers())
    if base is float:
        return st.one_of(st.floats(-0.5, 1.5), st.floats(), st.sampled_from([0.0, 1.0, math.nan, math.inf]))
    if base is str:
        return st.one_of(st.sampled_from(NAMES), st.text(max_size=6))
    return WILD


@st.composite
def config_kwargs(draw, cls):
    fields = dataclasses.fields(cls)
    hints = typing.get_type_hints(cls)
    chosen = draw(st.lists(st.sampled_from(fields), max_size=4, unique_by=lambda f: f.name))
    return {f.name: draw(st.one_of(_typed(hints[f.name]), WILD)) for f in chosen}


def _check_outcome(cls, kwargs: dict) -> None:
    field_names = {f.name for f in dataclasses.fields(cls)}
    try:
        cfg = cls(**kwargs)
    except ValueError as e:
        first = str(e).split(" ", 1)[0]
        assert first in field_names, f"the error must start with a field name: {e}"
        assert first in kwargs or first in CROSS_FIELD, f"{first} was not given: {e}"
        assert "\n" not in str(e)
        return
    # a valid config is plain JSON data (no NaN, no numpy scalars) and comes back equal
    text = json.dumps(cfg.to_dict(), allow_nan=False)
    assert cls.from_dict(json.loads(text)) == cfg
    for f in dataclasses.fields(cls):
        value = getattr(cfg, f.name)
        assert value is None or type(value) in (int, float, bool, str, tuple), (f.name, value)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_any_values_give_a_valid_config_or_a_value_error_naming_the_field(cls):
    @_settings(100)
    @given(config_kwargs(cls))
    def check(kwargs):
        _check_outcome(cls, kwargs)

    check()


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_from_dict_refuses_anything_but_known_fields(cls):
    @_settings(60)
    @given(st.one_of(WILD, st.dictionaries(st.one_of(st.text(max_size=12), st.integers()), WILD, max_size=3)))
    def check(data):
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            cfg = cls.from_dict(data)
        except ValueError as e:
            message = str(e)
            assert message.startswith(f"{cls.__name__}: ") or message.split(" ", 1)[0] in known, message
            return
        assert isinstance(data, dict) and set(data) <= known and isinstance(cfg, cls)

    check()


@_settings(100)
@given(width=st.one_of(st.floats(), st.integers(-2, 3)), family=st.sampled_from(["dcgan", "stylegan2"]))
def test_width_is_accepted_exactly_on_the_half_open_unit_interval(width, family):
    ok = math.isfinite(width) and 0 < width <= 1
    try:
        cfg = C.model_config(family, width=width)
    except ValueError as e:
        assert not ok and str(e).startswith("width must be in (0, 1]")
    else:
        assert ok and cfg.width == float(width) and type(cfg.width) is float


@_settings(100)
@given(temperature=st.floats(), weight=st.floats(), seed=st.integers())
def test_temperatures_weights_and_seeds_outside_their_ranges_are_refused(temperature, weight, seed):
    for name, value, ok in (("kl_temperature", temperature, math.isfinite(temperature) and temperature > 0),
                            ("pixel", weight, math.isfinite(weight) and weight >= 0),
                            ("seed", seed, 0 <= seed <= C.MAX_SEED)):
        try:
            C.DistillConfig(**{name: value})
        except ValueError as e:
            assert not ok and str(e).startswith(f"{name} "), e
        else:
            assert ok, (name, value)


# --- the CLI ------------------------------------------------------------------------------------------

def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return code, err.getvalue()


def _assert_usage_error(code, err: str, argv) -> None:
    assert code == 2, (argv, code, err)
    assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)
    assert "Traceback" not in err and ": error: " in err, (argv, err)


def _flag_values(cls) -> dict[str, st.SearchStrategy]:
    """For each flag generated from ``cls``: raw command-line strings, mostly out of range or unparseable."""
    hints = typing.get_type_hints(cls)
    numbers = st.one_of(st.integers(-10**6, 0).map(str), st.integers(2**32, 2**70).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.sampled_from(["nan", "inf", "-inf", "1e999", "-0.0", "1.5", "2", "0x10", "1_0", "", "abc",
                                         "--", "١"]))
    out = {}
    for f in dataclasses.fields(cls):
        base = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        if base is bool:
            out[f.name] = st.sampled_from(["yes", "1", ""])  # --flag=value: a switch takes no value
        elif f.metadata.get("choices") or f.name in ("data", "dataset", "extractor"):
            out[f.name] = st.text(min_size=1, max_size=8)
        elif base is str:
            out[f.name] = st.sampled_from(["", "cuda:x", "gpu", "cpu:1"] if f.name == "device" else [""])
        else:
            out[f.name] = numbers
    return out


@functools.cache
def _parser():
    return build_parser()


def _parsed(command: str, flag: str, raw: str):
    """The parsed flags, or None where argparse itself refuses the value."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return _parser().parse_args([command, f"--{flag.replace('_', '-')}={raw}"])
        except SystemExit:
            return None


@pytest.mark.parametrize("command,cls", [("train", C.TrainConfig), ("distill", C.DistillConfig),
                                         ("demo", C.DemoConfig), ("train-classifier", C.ClassifierTrainConfig)])
def test_bad_flag_values_exit_2_with_one_line_and_create_nothing(command, cls):
    strategies = _flag_values(cls)

    @_settings(30)
    @given(st.sampled_from(sorted(strategies)).flatmap(lambda name: st.tuples(st.just(name), strategies[name])))
    def check(flag_and_value):
        name, raw = flag_and_value
        # only values the parser or the config refuse: a valid one would start a run
        parsed = _parsed(command, name, raw)
        if parsed is not None:
            try:
                cls(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(cls)})
                assume(False)
            except ValueError:
                pass
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            argv = [command, "--out", str(out), "--teacher", str(Path(tmp) / "no-teacher")] \
                if "teacher" in {f.name for f in dataclasses.fields(cls)} else [command, "--out", str(out)]
            argv.append(f"--{name.replace('_', '-')}={raw}")
            code, err = _run(argv)
            _assert_usage_error(code, err, argv)
            assert not out.exists() and os.listdir(tmp) == [], argv

    check()


BAD_OTHER_FLAGS = st.one_of(
    st.tuples(st.just("eval"), st.just("--num-samples"), st.integers(max_value=1)),
    st.tuples(st.just("eval"), st.just("--batch-size"), st.integers(max_value=0)),
    st.tuples(st.just("eval"), st.just("--paired"), st.integers(max_value=-1)),
    st.tuples(st.just("eval"), st.just("--seeds"), st.one_of(st.integers(max_value=-1),
                                                             st.integers(min_value=C.MAX_SEED + 1))),
    st.tuples(st.just("eval"), st.just("--device"), st.sampled_from(["tpu", "cuda:", "", "cpux"])),
    st.tuples(st.just("eval"), st.just("--metrics"), st.sampled_from(["", ",", "fid,x", "FID", "psnr", "kid;is"])),
    st.tuples(st.just("sample"), st.sampled_from(["--num", "--nrow", "--scale"]), st.integers(max_value=0)),
    st.tuples(st.just("sample"), st.just("--seed"), st.one_of(st.integers(max_value=-1),
                                                              st.integers(min_value=C.MAX_SEED + 1))),
    st.tuples(st.just("profile"), st.sampled_from(["--latency-runs", "--throughput-batch", "--throughput-runs"]),
              st.integers(max_value=0)),
    st.tuples(st.just("profile"), st.just("--warmup"), st.integers(max_value=-1)),
    st.tuples(st.just("report"), st.just("--sample-num"), st.integers(max_value=-1)),
    st.tuples(st.just("export"), st.just("--atol"), st.sampled_from([0.0, -1.0, math.nan, math.inf])),
    st.tuples(st.sampled_from(["eval", "sample", "profile", "export"]), st.sampled_from(["--num", "--seed",
              "--batch-size", "--warmup"]), st.sampled_from(["x", "1.5", "", "1e3"])),
)


@_settings(50)
@given(BAD_OTHER_FLAGS)
def test_bad_values_of_the_other_commands_exit_2_before_any_work(case):
    command, flag, value = case
    with tempfile.TemporaryDirectory() as tmp:
        model = str(Path(tmp) / "no-model")  # never reached: the flag is refused first
        out = Path(tmp) / ("out.png" if command == "sample" else "out")
        argv = {"eval": ["eval", model], "sample": ["sample", model, "--out", str(out)],
                "profile": ["profile", model], "report": ["report", model, "--out", str(out)],
                "export": ["export", model, "--out", str(out)]}[command]
        if flag in ("--num", "--nrow", "--scale") and command != "sample":
            flag = "--batch-size" if command == "eval" else "--warmup"
        code, err = _run(argv + [f"{flag}={value}"])
        _assert_usage_error(code, err, argv + [f"{flag}={value}"])
        assert os.listdir(tmp) == []
