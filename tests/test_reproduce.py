"""docs/reproduce.md is true as written: every command on the page runs (in-process) and prints, in order, the
lines the page quotes after it ("..." in a quoted line stands for any text). The README's table of the same
claims names only commands of that page."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from cli_run import run_cli

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reproduce.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def examples() -> list[tuple[str, list[str]]]:
    """``(command, quoted lines)``: each ```console block (one ``$ ufm ...`` line) with the ```text block after it."""
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    out = []
    for k, (kind, body) in enumerate(blocks):
        if kind != "console":
            continue
        command = body.strip()
        assert command.startswith("$ ufm ") and "\n" not in command, command
        assert k + 1 < len(blocks) and blocks[k + 1][0] == "text", f"no quoted output after {command}"
        out.append((command[2:], [line for line in blocks[k + 1][1].splitlines() if line.strip()]))
    return out


def pattern(line: str) -> re.Pattern:
    parts = [re.escape(" ".join(p.split())) for p in line.split("...")]
    return re.compile(".*".join(parts))


def missing(output: str, quoted: list[str]) -> list[str]:
    """The quoted lines not found in ``output`` in order (whitespace runs compared as one space)."""
    lines = [" ".join(line.split()) for line in output.splitlines()]
    i, out = 0, []
    for q in quoted:
        p = pattern(q.strip())
        while i < len(lines) and not p.fullmatch(lines[i]):
            i += 1
        if i == len(lines):
            out.append(q)
            i = 0
        else:
            i += 1
    return out


def test_the_page_has_examples_and_the_matcher_is_strict():
    assert len(examples()) >= 6
    assert missing("a 1.5 b\nverdict HOLDS: x", ["a 1.5 ...", "verdict HOLDS: ..."]) == []
    assert missing("verdict HOLDS: x\na 1.5 b", ["a 1.5 ...", "verdict HOLDS: ..."]) == ["verdict HOLDS: ..."]
    assert missing("a 1.51", ["a 1.5"]) == ["a 1.5"]


def test_readme_table_names_the_page_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = {c for c, _ in examples()}
    table = readme[readme.index("## Reproduce the papers"):]
    table = table[:table.index("\n## ", 5)]
    quoted = re.findall(r"`(ufm [^`]+)`", table)
    assert quoted and set(quoted) <= commands, set(quoted) - commands


@pytest.mark.slow
@pytest.mark.parametrize("command, quoted", examples(), ids=[c for c, _ in examples()])
def test_command_prints_what_the_page_says(capsys, command, quoted):
    code, out, err = run_cli(capsys, *shlex.split(command)[1:])
    assert code == 0, err
    assert missing(out, quoted) == [], out
