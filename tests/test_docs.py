"""The documentation holds together: every relative link of README.md and docs/*.md points at a file of the
repository (and at a heading there, when it names one), the README stays a short front door, and it carries the
two set-up commands verbatim (the test command is the one `.ci/run` runs)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
VERIFY_COMMAND = "python -m pip install -e '.[all]' && ufm verify"

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(path: Path):
    """(line number, text) of the lines outside fenced code blocks."""
    inside = False
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield i, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (word characters, spaces and hyphens
    kept), spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out = set()
    for _, line in prose_lines(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            out.add(slug(m.group(1)))
    return out


def links(path: Path):
    for i, line in prose_lines(path):
        for m in LINK.finditer(line):
            yield i, m.group(1)


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) is not None


def broken_links(path: Path) -> list[str]:
    bad = []
    for line, target in links(path):
        if is_external(target):
            continue
        where = f"{path.relative_to(ROOT)}:{line}: {target}"
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if ROOT not in dest.parents and dest != ROOT:
            bad.append(where + " (outside the repository)")
        elif not dest.exists():
            bad.append(where + " (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            bad.append(where + " (no such heading)")
    return bad


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_the_checker_catches_a_broken_link(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Top: `x`\n\n[ok](a.md#top-x) [here](#top-x) [gone](b.md) [bad](a.md#nope)\n"
                                   "[web](https://example.org) ![img](c.png)\n```\n[in code](zzz.md)\n```\n")
    (tmp_path / "c.png").write_bytes(b"")
    bad = broken_links(tmp_path / "a.md")
    assert [b.split(": ", 1)[1] for b in bad] == ["b.md (no such file)", "a.md#nope (no such heading)"]


def test_readme_is_a_short_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def test_readme_has_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if "pytest" in line and not line.lstrip().startswith("#")]
    assert ci, ".ci/run runs no pytest command"
    for command in ci:
        assert command in readme, f"README.md lacks the test command of .ci/run: {command}"
    assert VERIFY_COMMAND in readme
