"""The README is the front page: short, every name it shows exists, every page it links to is there."""
import re
from pathlib import Path

import gandistill
from gandistill.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_front_page_stays_short():
    assert len(README) <= 15_000, f"README.md is {len(README)} characters; move detail to docs/"


def test_every_api_name_the_readme_shows_exists():
    code = "\n".join(re.findall(r"```python\n(.*?)```", README, re.S))
    names = set(re.findall(r"\bgd\.([A-Za-z_]\w*)", code))
    assert names, "the README shows the API"
    assert not [n for n in names if not hasattr(gandistill, n)]


def test_every_command_the_readme_shows_exists():
    code = "\n".join(re.findall(r"```(?:bash)?\n(.*?)```", README, re.S))
    commands = set(re.findall(r"^\s*(?:torchrun .*? -m )?gandistill ([a-z-]+)", code, re.M))
    parser = build_parser()
    known = set(next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices)
    assert commands and not commands - known


def test_every_linked_page_and_file_exists():
    links = re.findall(r"\]\(([^)#\s]+)\)", README)
    for text in [README] + [p.read_text() for p in (ROOT / "docs").glob("*.md")]:
        links += re.findall(r"`((?:docs|samples|scripts|pretrained)/[\w./-]+\.(?:md|png|py|sh))`", text)
    missing = [link for link in set(links) if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing
