"""make_student: the caller's random streams, and what singular value scaling may touch."""
import pytest
import torch

from gandistill.students import make_student

from .conftest import FAMILIES, tiny_generator


@pytest.mark.parametrize("init", ["random", "l1"])
def test_a_seeded_make_student_leaves_the_callers_random_stream_alone(init):
    teacher = tiny_generator("dcgan")
    torch.manual_seed(123)
    expected = torch.rand(8)
    torch.manual_seed(123)
    first = make_student(teacher, 0.5, init, seed=7)
    assert torch.equal(torch.rand(8), expected)  # as if make_student had not been called
    again, other = make_student(teacher, 0.5, init, seed=7), make_student(teacher, 0.5, init, seed=8)
    same = [torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items()]
    assert all(same)  # the seed still decides the student
    if init == "random":
        assert not all(torch.equal(v, other.state_dict()[k]) for k, v in first.state_dict().items())


@pytest.mark.parametrize("family", FAMILIES)
def test_svs_slices_the_style_affines_and_rescales_only_convolution_kernels(family):
    teacher = tiny_generator(family)
    student = make_student(teacher, 0.5, init="svs")
    t_state, s_state = teacher.state_dict(), student.state_dict()
    kept = student.lineage["kept_channels"]
    affines = 0
    for group in teacher.channel_groups():
        index = torch.as_tensor(kept[group.name])
        for member, dim in group.members:
            if ".affine." in member:  # maps w to one style per input channel: sliced, its values kept
                torch.testing.assert_close(s_state[member], t_state[member].index_select(dim, index), rtol=0,
                                           atol=0)
                affines += 1
    if family.startswith("stylegan2"):
        assert affines
    l1 = make_student(teacher, 0.5, init="l1").state_dict()
    changed = [k for k, v in s_state.items() if not torch.equal(v, l1[k])]
    assert changed and all(s_state[k].ndim == 4 for k in changed)  # [out, in, kh, kw] kernels only
