"""Everything shipped in pretrained/: loads with from_pretrained, matches the sha256 its card records, carries
the card's required facts, and holds no pickles."""
import hashlib
import json
from pathlib import Path

import pytest

from gandistill.checkpoint import CONFIG_NAME, WEIGHTS_NAME, from_pretrained, load_gan

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
