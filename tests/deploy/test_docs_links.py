"""The repository explains itself: no reference to notes outside it, and no link to a missing page.

* No file of the repository cites a document that is not in it (the private design and protocol
  notes, or a sibling directory of the checkout).
* Every relative markdown link in README.md and docs/*.md names a file that exists, and, for a
  link into a markdown page, a heading of that page (GitHub's anchors).
* Every ``docs/<page>.md`` that code or docs mention exists, and so does its ``#anchor``.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = [
    "src",
    "tests",
    "bench",
    "tools",
    "docs",
    "examples",
    "deploy",
    "images",
    "steering_images",
    "evaluation_images",
    "README.md",
    "Makefile",
    "pyproject.toml",
]
SKIPPED_PARTS = {"__pycache__", ".venv", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
# Built from pieces so that this file does not match itself.
OUTSIDE = [
    re.compile(re.escape("../" + "shared")),
    re.compile(re.escape("DESIGN" + ".md")),
    re.compile(re.escape("panda" + "_protocol")),
    re.compile(r"reliability\.md\s*" + "\N{SECTION SIGN}"),  # the private notes' numbered sections
    re.compile("reliability research " + "notes"),
    re.compile("\N{SECTION SIGN}" + r"\s?\d+\.\d+"),  # a numbered section of a document that is not here
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOC_MENTION = re.compile(r"(?<![\w/.-])docs/([A-Za-z0-9_.-]+\.md)(#[A-Za-z0-9_-]+)?")


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        root = REPO / name
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in candidates:
            parts = set(path.relative_to(REPO).parts)
            if parts & SKIPPED_PARTS or any(part.endswith(".egg-info") for part in parts):
                continue
            if text_of(path) is not None:
                files.append(path)
    return files


@cache
def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def without_code_blocks(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces become hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in re.finditer(r"^#{1,6} +(.+?) *#*$", without_code_blocks(page.read_text()), flags=re.MULTILINE):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_slug_rule_matches_githubs() -> None:
    assert slug("`docker` — hardened containers") == "docker--hardened-containers"
    assert slug("(b) Control plane, side by side") == "b-control-plane-side-by-side"
    assert slug("The oracle: `tests/support/invariants.py`") == "the-oracle-testssupportinvariantspy"
    assert slug("`--loadJson`") == "--loadjson"


def test_nothing_cites_a_document_outside_the_repository() -> None:
    found = []
    for path in scanned_files():
        for number, line in enumerate((text_of(path) or "").splitlines(), 1):
            if any(pattern.search(line) for pattern in OUTSIDE):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "references to documents that are not in the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_files_and_headings_that_exist(page: Path) -> None:
    broken = []
    for target in LINK.findall(without_code_blocks(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.relative_to(REPO)}")
        elif not linked.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
    assert not broken, f"broken links in {page.relative_to(REPO)}:\n" + "\n".join(broken)


def test_docs_pages_named_anywhere_exist_with_their_anchors() -> None:
    broken = []
    for path in scanned_files():
        for number, line in enumerate((text_of(path) or "").splitlines(), 1):
            for name, anchor in DOC_MENTION.findall(line):
                page = REPO / "docs" / name
                where = f"{path.relative_to(REPO)}:{number}: docs/{name}{anchor}"
                if not page.is_file():
                    broken.append(f"{where}: no such page")
                elif anchor and anchor[1:] not in anchors(page):
                    broken.append(f"{where}: no such heading")
    assert not broken, "references to missing pages or headings:\n" + "\n".join(broken)
