"""Everything shipped in pretrained/: loads with from_pretrained, matches the sha256 its card records, carries
the card's required facts, and holds no pickles; a distilled student's card gives the command that made it."""
import hashlib
import json
import shlex
from pathlib import Path

import pytest

from gandistill.checkpoint import CONFIG_NAME, WEIGHTS_NAME, from_pretrained, load_gan
from gandistill.cli import build_parser, config_from_args
from gandistill.config import DISTILL_BOOKKEEPING, DistillConfig

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
SHIPPED = sorted(p for p in PRETRAINED.iterdir() if (p / "README.md").is_file()) if PRETRAINED.is_dir() else []


def _model_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob(CONFIG_NAME))


def test_something_is_shipped():
    assert SHIPPED, "pretrained/ has no model with a card"


@pytest.mark.parametrize("root", SHIPPED, ids=lambda p: p.name)
def test_card_records_every_weights_file_and_it_matches(root):
    card = (root / "README.md").read_text()
    weights = sorted(root.rglob("*.safetensors"))
    assert weights, f"{root}: no weights"
    for path in weights:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest in card, f"{path}: sha256 {digest} is not the one its card records"
    # the facts every card must state
    assert "MIT" in card, "the data licence"
    assert "```" in card and ("gandistill " in card or "scripts/" in card), "the command that produced it"
    assert "wall time" in card.lower() or "Wall time" in card


@pytest.mark.parametrize("root", SHIPPED, ids=lambda p: p.name)
def test_shipped_models_load_and_hold_no_pickles(root):
    dirs = _model_dirs(root)
    assert dirs
    for d in dirs:
        assert (d / WEIGHTS_NAME).is_file()
        kind = json.loads((d / CONFIG_NAME).read_text())["kind"]
        model = from_pretrained(d, kind=kind)
        assert sum(p.numel() for p in model.parameters()) > 0
    if (root / "generator").is_dir():  # a GAN directory: generator and discriminator together
        generator, discriminator = load_gan(root)
        assert generator.family == discriminator.family
    pickles = [p for p in root.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".pickle", ".bin")]
    assert not pickles, f"pickled files shipped: {pickles}"


@pytest.mark.parametrize("root", [p for p in SHIPPED if "```\ngandistill distill " in (p / "README.md").read_text()],
                         ids=lambda p: p.name)
def test_a_student_cards_command_gives_the_config_it_was_made_with(root):
    card = (root / "README.md").read_text()
    command = card.split("```\n", 1)[1].split("\n", 1)[0].split("   #", 1)[0]
    argv = shlex.split(command)[1:]
    from_card = vars(config_from_args(DistillConfig, build_parser().parse_args(argv)))
    # settings added after the student was made count as what they meant then (DistillConfig.made_with)
    made_with = DistillConfig.made_with(json.loads((root / CONFIG_NAME).read_text())["extra"]["distill"])
    for key, value in from_card.items():
        if key in DISTILL_BOOKKEEPING:
            continue
        expected = made_with.get(key, "<not recorded>")
        assert value == expected, f"{root.name}: its card's command sets {key}={value!r}, it was made with {expected!r}"
