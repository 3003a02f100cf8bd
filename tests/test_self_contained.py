"""The repository carries its own documentation and test data: nothing it ships points outside itself.

`python -m pytest tests/test_self_contained.py -q`. A user's clone has only the repository, so a docstring,
comment, manifest or test that cites a file beside the checkout (a folder of specifications or of shared
data next to the repository) names something the user cannot read or run. Citations go to docs/ instead, and this test checks that every `docs/<page>.md §N`
they name exists, that the README's and docs' relative links resolve, and that the README's layout section
lists exactly the repository's top-level folders.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("qc2c/", "runner/", "remote/", "manifests/", "tests/", "docs/", ".ci/")
SCANNED_FILES = ("README.md", "Makefile", "pyproject.toml", "Dockerfile")
# built from pieces so that this file does not match itself
OUTSIDE = re.compile("|".join([r"\bspec" + r"s/", r"\.\./" + "shared", r"""["']""" + "shared" + r"""["']\s*/"""]))
DOC_CITATION = re.compile(r"docs/([\w-]+\.md)(?:\s*§\s*(\d+(?:\.\d+)*))?")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


def tracked_files() -> list[str]:
    """Paths of the tracked files, relative to the repository root (what a clone holds)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def text_files() -> dict[str, str]:
    """Tracked text files in the scanned places (binary files such as model weights are left out)."""
    out = {}
    for rel in tracked_files():
        if not (rel.startswith(SCANNED) or rel in SCANNED_FILES):
            continue
        path = REPO_ROOT / rel
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            out[rel] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(markdown: str) -> list[str]:
    found, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.append(match[2])
    return found


def section_numbers(markdown: str) -> set[str]:
    """'1', '1.2', ... of headings written '## 1. Title' or '### 1.2 Title'."""
    return {m[1] for h in headings(markdown) if (m := re.match(r"(\d+(?:\.\d+)*)\.?\s", h))}


def test_nothing_cites_files_outside_the_repository():
    found = [
        f"{rel}:{n}: {line.strip()[:100]}"
        for rel, text in text_files().items()
        for n, line in enumerate(text.splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, "cite docs/ instead of files outside the repository:\n" + "\n".join(found)


def test_every_docs_citation_names_an_existing_page_and_section():
    pages = {p.name: p.read_text(encoding="utf-8") for p in (REPO_ROOT / "docs").glob("*.md")}
    problems = []
    for rel, text in text_files().items():
        for n, line in enumerate(text.splitlines(), 1):
            for page, section in DOC_CITATION.findall(line):
                if page not in pages:
                    problems.append(f"{rel}:{n}: docs/{page} does not exist")
                elif section and section not in section_numbers(pages[page]):
                    problems.append(f"{rel}:{n}: docs/{page} has no section {section}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "doc", ["README.md", *sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "docs").glob("*.md"))]
)
def test_relative_links_resolve(doc):
    source = REPO_ROOT / doc
    problems = []
    for target in LINK.findall(source.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (source.parent / path).resolve() if path else source
        if not file.exists():
            problems.append(f"{doc}: link to {target}: {path} does not exist")
        elif anchor and file.suffix == ".md" and anchor not in {slug(h) for h in headings(file.read_text())}:
            problems.append(f"{doc}: link to {target}: no heading with anchor #{anchor}")
    assert not problems, "\n".join(problems)


def test_the_readme_layout_lists_exactly_the_top_level_folders():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    listed = {m[1] for line in block.splitlines() if (m := re.match(r"(\.?[\w-]+)/\s", line))}
    folders = {rel.split("/", 1)[0] for rel in tracked_files() if "/" in rel}
    assert listed == folders, f"README layout lists {sorted(listed)}, the tree has {sorted(folders)}"


def test_the_conformance_data_is_in_the_repository():
    """The C2C conformance tests must run in every clone (tests/conftest.py fails them without the data)."""
    data = REPO_ROOT / "tests" / "data" / "conformance" / "c2c"
    tracked = set(tracked_files())
    for name in ("reference_float32.pt", "summary_float32.json", "README.md", "fixtures/fixtures_manifest.json"):
        assert f"tests/data/conformance/c2c/{name}" in tracked, f"{data / name} is not tracked"
