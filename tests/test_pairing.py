"""Students pair with the teacher whose weights their lineage records (sha256), by config only where no digest
is known, and say which; an explicit teacher that is also evaluated is never paired with itself."""
import pytest
import torch

from gandistill import metrics as M
from gandistill.checkpoint import from_pretrained, save_pretrained, weights_sha256
from gandistill.profile import attach_speedups, find_teachers, teacher_pairs
from gandistill.students import make_student

from .conftest import tiny_generator
from .test_report import tiny_models  # noqa: F401 - fixture


@pytest.fixture
def two_teachers(tmp_path):
    """A snapshot and a retrained teacher of one config, and a student of the second (its digest recorded)."""
    first, second = tiny_generator("dcgan"), tiny_generator("dcgan")
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.1)
    save_pretrained(first, tmp_path / "snapshot")
    save_pretrained(second, tmp_path / "teacher")
    student = make_student(from_pretrained(tmp_path / "teacher"), 0.5)
    student.lineage["teacher"]["weights_sha256"] = weights_sha256(tmp_path / "teacher")
    save_pretrained(student, tmp_path / "student")
    return [from_pretrained(tmp_path / name) for name in ("snapshot", "teacher", "student")]


def test_a_student_pairs_with_the_teacher_its_lineage_digest_names(two_teachers):
    assert teacher_pairs(two_teachers) == {2: (1, "sha256")}
    assert find_teachers(two_teachers[::-1]) == {0: 1}
    # no digest on either side: family + config, and said so
    teacher = tiny_generator("dcgan")
    assert teacher_pairs([teacher, make_student(teacher, 0.5)]) == {1: (0, "config")}
    # the digest recorded and another one known: not its teacher, whatever the config
    assert teacher_pairs([two_teachers[0], two_teachers[2]]) == {}


def test_speed_ups_pair_by_digest_and_say_so(two_teachers):
    results = [{"model": str(i), "family": m.family, "config": m.config.to_dict(), "lineage": m.lineage,
                "weights_sha256": m.weights_sha256, "macs": 100 // (i + 1), "params": 10} for i, m in
               enumerate(two_teachers)]
    attach_speedups(results)
    assert results[2]["teacher"] == "1" and results[2]["speedup"]["paired_by"] == "sha256"
    assert "teacher" not in results[0] and "teacher" not in results[1]


def test_eval_with_a_listed_teacher_never_pairs_it_with_itself(tiny_models, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GANDISTILL_CACHE", str(tmp_path / "cache"))
    teacher, student = str(tiny_models / "teacher"), str(tiny_models / "student")
    records = M.evaluate([teacher, student], dataset="synthetic", metrics=("fid",), num_samples=32, paired=8,
                         extractor_weights=tiny_models / "cls", teacher=teacher)
    assert records[0]["paired"] is None
    assert records[1]["paired"]["teacher"] == teacher and records[1]["paired"]["paired_by"] == "teacher"
