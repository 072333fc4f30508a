"""README.md fits a reader's attention and runs as written: at most 12 KB; every `hbbench …` command of
its shell blocks parses (the subcommand exists and click accepts its options and arguments); every
`make …` target exists in the Makefile; every relative link of the README, CHANGELOG.md, docs/ and
bench/README.md names a file that exists (and, with `#anchor`, a heading of it); the Python block
runs (slow: it loads the real model)."""
import re
import shlex
from pathlib import Path

import click
import pytest

from hbbench.cli import main
from tests.conftest import run_doc_python

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_BYTES = 12 * 1024
PAGES = [README, ROOT / "CHANGELOG.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(text: str, kinds=("bash", "console", "sh", "shell")) -> list[str]:
    return [body for kind, body in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S) if kind in kinds]


def shell_commands(text: str) -> list[str]:
    """The commands of the shell blocks: `$ ` prompts dropped, `\\` continuations joined, comments cut."""
    commands = []
    for block in blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
            if line:
                commands.append(line)
    return commands


def readme_commands(program: str) -> list[list[str]]:
    return [argv for argv in map(shlex.split, shell_commands(README.read_text())) if argv[0] == program]


def parse(argv: list[str]) -> None:
    """Parse `hbbench ARGS` as the CLI would, without running the command."""
    parent = click.Context(main, info_name="hbbench")
    name, command, rest = main.resolve_command(parent, argv)
    assert command is not None, f"no subcommand {argv[0]!r}"
    with command.make_context(name, rest, parent=parent):
        pass


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, flags=re.M)}


def test_the_readme_is_at_most_12_kb():
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size} bytes; move detail to docs/ (limit {MAX_BYTES})"


def test_the_readme_shows_the_commands_a_new_user_needs():
    hbbench = [argv[1] for argv in readme_commands("hbbench")]
    assert {"sweep", "report", "leaderboard"} <= set(hbbench)
    make = {target for argv in readme_commands("make") for target in argv[1:]}
    assert {"install", "sweep", "test", "test-all"} <= make
    text = README.read_text()
    assert "How to read it." in text and "### Layers" in text
    assert "import hbbench" in "".join(blocks(text, ("python",)))


@pytest.mark.parametrize("argv", readme_commands("hbbench"), ids=" ".join)
def test_every_hbbench_command_of_the_readme_parses(argv):
    try:
        parse(argv[1:])
    except click.ClickException as error:
        pytest.fail(f"{shlex.join(argv)}: {error.format_message()}")


def test_a_wrong_command_would_be_caught():
    """The parse above is not vacuous: an unknown option or a bad choice fails it."""
    for argv in (["sweep", "--no-such-option"], ["sweep", "--device", "tpu"], ["list", "nothing"]):
        with pytest.raises(click.ClickException):
            parse(argv)
    with pytest.raises(click.ClickException):
        parse(["no-such-command"])


def test_every_make_target_of_the_readme_exists():
    targets = makefile_targets()
    missing = [shlex.join(argv) for argv in readme_commands("make") if not set(argv[1:]) <= targets]
    assert not missing, f"Makefile has no such target: {missing} (targets: {sorted(targets)})"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_name_files_and_headings_that_exist(page):
    broken = []
    for link in _links(page):
        if re.match(r"[a-z]+:", link):
            continue  # http(s), mailto
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(link)
        elif anchor and target.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", target.read_text(), flags=re.M)
            if anchor not in {_anchor(h) for h in headings}:
                broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_readme_names_only_paths_that_exist():
    text = README.read_text()
    paths = set(re.findall(r"(?<![\w/.])((?:docs|bench|examples|results|tests)/[\w./-]*\.(?:md|py|png))", text))
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README.md names missing files: {missing}"


@pytest.mark.slow
def test_the_readme_python_block_runs(tmp_path):
    """In this process, as a notebook runs it, in a fresh directory (it writes results/ there)."""
    run_doc_python(tmp_path, "".join(blocks(README.read_text(), ("python",))), README)
    assert list((tmp_path / "results").glob("*/summary.csv")), "hbbench.sweep wrote no summary.csv"
