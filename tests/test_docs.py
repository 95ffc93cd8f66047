"""The README is a front page and the docs are user documentation: short where it must be, every link
resolves (files and section anchors), and no work-process words (those belong in CHANGELOG.md)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PROCESS_WORDS = re.compile(r"\b(issues?|sessions?|post[ -]hoc|goals?)\b", re.I)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", text, re.M)}


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    assert "make demo" in "\n".join(lines) and "make test" in "\n".join(lines)
    begin = lines.index("<!-- own-photos: begin -->")
    end = lines.index("<!-- own-photos: end -->")
    assert end < 120, "the own-photos commands must sit in the first 120 lines"
    block = "\n".join(lines[begin:end])
    for step in ("pgan data csv", "pgan train", "pgan eval", "pgan index build", "pgan search", "pgan serve"):
        assert step in block


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_no_process_words(page):
    hits = [f"{i}: {line.strip()}" for i, line in enumerate(page.read_text().splitlines(), 1)
            if PROCESS_WORDS.search(line)]
    assert not hits, f"{page.relative_to(ROOT)} reads like a work diary:\n" + "\n".join(hits[:10])


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.relative_to(ROOT)}: link to missing {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.relative_to(ROOT)}: no section #{anchor} in {dest.name}"
