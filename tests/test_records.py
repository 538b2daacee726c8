"""Records that commands append to (export.json, eval --out) lose nothing to concurrent writers, and eval --out
extends only a file of its own records: never through a link, never a FIFO, never any JSON list."""
import json
import os
import threading
from pathlib import Path

import pytest

from gandistill.export import _update_report
from gandistill.metrics.evaluation import append_results
from gandistill.outputs import OutputRefused

from .test_inputs import cli, one_line


def _together(n: int, work) -> None:
    start = threading.Barrier(n)
    errors = []

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _eval_record(i: int) -> dict:
    return {"model": f"m{i}", "metrics": {"fid64[fmnist-cnn]": float(i)}, "protocol": {"num_samples": 64}}


@pytest.mark.parametrize("name", ["r.json", "r.jsonl"])
def test_simultaneous_eval_appends_keep_every_record(tmp_path, name):
    out = tmp_path / name
    _together(8, lambda i: [append_results([_eval_record(10 * i + k)], out) for k in range(3)])
    text = out.read_text()
    records = json.loads(text) if name.endswith(".json") else [json.loads(line) for line in text.splitlines()]
    assert sorted(r["model"] for r in records) == sorted(f"m{10 * i + k}" for i in range(8) for k in range(3))


def test_simultaneous_exports_keep_every_record(tmp_path):
    report = tmp_path / "export.json"
    record = {"format": "torchscript", "sha256": "0" * 64, "check": {"passed": True}}
    _together(8, lambda i: [_update_report(report, f"s{i}-{k}.pt", record) for k in range(3)])
    assert sorted(json.loads(report.read_text())) == sorted(f"s{i}-{k}.pt" for i in range(8) for k in range(3))


@pytest.mark.parametrize("name", ["r.json", "r.jsonl"])
def test_eval_out_never_writes_through_a_link_nor_replaces_it(tmp_path, name):
    victim = tmp_path / "victim.json"
    victim.write_text(json.dumps([_eval_record(0)]) + "\n")
    link = tmp_path / name
    link.symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(OutputRefused, match="symbolic link"):
        append_results([_eval_record(1)], link)
    assert victim.read_bytes() == before and link.is_symlink()


def test_eval_out_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "r.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(OutputRefused, match="not a regular file"):
        append_results([_eval_record(1)], fifo)  # would block forever when opened


@pytest.mark.parametrize("name,content", [("r.json", '[{"a": 1}]\n'), ("r.json", "[]x"),
                                          ("r.jsonl", '{"a": 1}\n'), ("r.jsonl", "my notes\n")])
def test_eval_out_extends_only_its_own_records(tmp_path, name, content):
    out = tmp_path / name
    out.write_text(content)
    with pytest.raises(OutputRefused, match="not eval results"):
        append_results([_eval_record(1)], out)
    assert out.read_text() == content
    mine = tmp_path / f"mine-{name}"
    append_results([_eval_record(1)], mine)
    append_results([_eval_record(2)], mine)  # its own records: extended


def test_eval_cli_refuses_a_foreign_out_before_evaluating(tmp_path, capsys, monkeypatch):
    import gandistill.metrics.evaluation as E
    from gandistill.checkpoint import save_pretrained

    from .conftest import tiny_generator

    model = save_pretrained(tiny_generator("dcgan", base_channels=4), tmp_path / "g")
    out = tmp_path / "notes.json"
    out.write_text('[{"a": 1}]\n')
    monkeypatch.setattr(E, "resolve_extractor", lambda *a, **k: pytest.fail("evaluated before the check"))
    code, err = cli(["eval", model, "--dataset", "synthetic", "--out", out], capsys)
    assert code == 2 and "not eval results" in one_line(err) and out.read_text() == '[{"a": 1}]\n'
    assert Path(out).is_file()
