"""docs/results.md runs as written: its `$ ` commands in order in a fresh directory, each exiting 0, then
its Python blocks as one script; what it prints is the doc's output blocks, and the leaderboard it
writes is the doc's table (but for seconds, which depend on the machine). Both run in this process, as
a user's shell and notebook would run them (tests/test_packaging.py runs the installed command)."""
import re
from pathlib import Path

import pytest

from tests.conftest import run_doc_commands, run_doc_python

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


def doc_commands() -> list[str]:
    return [line[2:].strip() for block in blocks("console") for line in block.splitlines() if line.startswith("$ ")]


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("results-doc")
    run_doc_commands(cwd, doc_commands())
    return cwd, run_doc_python(cwd, "\n".join(blocks("python")), DOC)


def _table(text: str) -> list[list[str]]:
    """The leaderboard table's rows, cells stripped, its seconds column blanked."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    start = next(i for i, line in enumerate(lines) if "worst-case top-1" in line)
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[start:]]
    seconds = rows[0].index("s / img")
    return [row[:seconds] + row[seconds + 1:] for row in rows]


def test_the_doc_walks_from_two_sweeps_to_a_leaderboard_and_a_comparison():
    commands = doc_commands()
    assert sum(c.startswith("hbbench sweep") for c in commands) == 2
    assert any(c.startswith("hbbench leaderboard") for c in commands)
    script = "\n".join(blocks("python"))
    assert "hbbench.load_run(" in script and "hbbench.compare(" in script


@pytest.mark.slow  # the doc's commands as written: real processes on the real model
def test_the_leaderboard_is_the_docs_table(walked):
    cwd, _ = walked
    assert _table((cwd / "results" / "leaderboard.md").read_text()) == _table(DOC.read_text())


@pytest.mark.slow  # the doc's commands as written: real processes on the real model
def test_the_python_blocks_print_what_the_doc_shows(walked):
    _, stdout = walked
    assert stdout == "".join(blocks("text"))


@pytest.mark.slow  # the doc's commands as written: real processes on the real model
def test_the_doc_exports_a_run_and_rechecks_it(walked):
    """The walk-through's `hbbench recheck` exited 0 in `walked`: every example passed its audit and every
    recomputed top-1 is the run's (a disagreement beyond float noise exits 1)."""
    commands = doc_commands()
    export = next(i for i, c in enumerate(commands) if c.startswith("hbbench export"))
    recheck = next(i for i, c in enumerate(commands) if c.startswith("hbbench recheck"))
    assert export < recheck and commands[recheck].split()[2] == commands[export].split("--out ")[1].split()[0]
    cwd, _ = walked
    assert (cwd / commands[export].split("--out ")[1].split()[0]).is_file()
