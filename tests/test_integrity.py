"""Run directories damaged outside hbbench (copied, synced, archived, edited): a fault-injection
matrix. The session's finished tiny run (tests/conftest.py: the example plugin's tiny CNN on 2 images,
made through the CLI in-process) is the reference; each case damages a copy, then checks `hbbench verify`, `hbbench
report`, `hbbench check` and the resume (the same `hbbench sweep` command): no traceback, one line naming the
damaged file, nothing else rewritten, and the resumed summary equal to the reference's."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import TINY_RUN_FLAGS, invoke


@pytest.fixture(scope="module")
def GRID(tiny_flags):
    """The command line that made the session's tiny run (its `--out` and `--run` aside)."""
    return [*tiny_flags, *TINY_RUN_FLAGS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run, GRID):
    """The reference run (the session's tiny run), and a run of another grid (its `none` defense
    alone) whose cells have the same ids as the reference's `none` cells: their JSON is "the JSON
    of another run"."""
    out = tmp_path_factory.mktemp("integrity")
    code, _, err = invoke("sweep", *GRID, "--defense", "none", "--out", out, "--run", "other")
    assert code == 0, err
    summary = pd.read_csv(tiny_run / "summary.csv")
    summary = summary[summary.attack != "worst_case"]
    ids = dict(zip(summary.defense, summary.cell_id))
    return {"ref": tiny_run, "other": out / "other", "a": ids["none"], "b": ids["jpeg"]}


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_a_row(path: Path):
    pq.write_table(pq.read_table(path).slice(0, 1), path)  # the schema metadata (cell, spec) is kept


def _strip_integrity(path: Path):
    summary = json.loads(path.read_text())
    del summary["integrity"]
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


@dataclass
class Case:
    damage: object  # (run dir, runs) -> None
    file: str  # the file every command must name, "{a}"/"{b}" = the none / jpeg cell
    status: str  # what verify says of it
    words: str  # what every line naming it says
    recomputed: tuple = ()  # cells the resume recomputes ("a", "b")
    read_only: bool = False


def _cell(key, ext):
    return lambda r, runs: r / "cells" / f"{runs[key]}.{ext}"


CASES = {
    "truncated-parquet": Case(lambda r, x: _truncate(_cell("b", "parquet")(r, x)), "cells/{b}.parquet", "damaged",
                              "not a readable Parquet file", ("b",)),
    "parquet-of-another-cell": Case(lambda r, x: shutil.copy(_cell("a", "parquet")(r, x), _cell("b", "parquet")(r, x)),
                                    "cells/{b}.parquet", "damaged", "holds the records of cell {a}", ("b",)),
    "json-not-parsable": Case(lambda r, x: _truncate(_cell("b", "json")(r, x)), "cells/{b}.json", "damaged",
                              "not valid JSON", ("b",)),
    "json-of-another-run": Case(lambda r, x: shutil.copy(_cell("a", "json")(x["other"], x), _cell("a", "json")(r, x)),
                                "cells/{a}.json", "foreign", "belongs to another run", ("a",)),
    "json-without-parquet": Case(lambda r, x: _cell("b", "parquet")(r, x).unlink(), "cells/{b}.json", "damaged",
                                 "its Parquet is missing", ("b",)),
    "parquet-without-json": Case(lambda r, x: _cell("b", "json")(r, x).unlink(), "cells/{b}.parquet", "damaged",
                                 "its JSON is missing", ("b",)),
    "row-count-disagrees": Case(lambda r, x: _drop_a_row(_cell("b", "parquet")(r, x)), "cells/{b}.parquet",
                                "damaged", "has 1 row, its JSON records 2", ("b",)),
    "manifest-truncated": Case(lambda r, x: _truncate(r / "manifest.json"), "manifest.json", "damaged",
                               "not valid JSON"),
    "manifest-missing": Case(lambda r, x: (r / "manifest.json").unlink(), "manifest.json", "missing",
                             "deleted or never written"),
    "stray-file": Case(lambda r, x: (r / "cells" / "notes.txt").write_text("copied from a laptop\n"),
                       "cells/notes.txt", "foreign", "not a file hbbench writes"),
    "read-only-cells": Case(lambda r, x: _truncate(_cell("b", "parquet")(r, x)), "cells/{b}.parquet", "damaged",
                            "not a readable Parquet file", ("b",), read_only=True),
    # A cell written before cells recorded their integrity: kept when both files parse and agree.
    "legacy-cell-without-integrity": Case(lambda r, x: _strip_integrity(_cell("b", "json")(r, x)), "cells/{b}",
                                          "ok", "without an integrity record"),
}


FAST_CASES = ("truncated-parquet", "json-of-another-run", "manifest-truncated", "stray-file")  # the rest: slow tier


@pytest.fixture(params=[pytest.param(k, marks=() if k in FAST_CASES else pytest.mark.slow) for k in CASES],
                ids=list(CASES))
def damaged(request, runs, tmp_path):
    """(copy of the reference with the case's damage, the case with names filled in)."""
    case = CASES[request.param]
    run = tmp_path / "results" / "run"
    shutil.copytree(runs["ref"], run)
    case.damage(run, runs)
    names = {"a": runs["a"], "b": runs["b"]}
    filled = Case(case.damage, case.file.format(**names), case.status, case.words.format(**names),
                  tuple(names[k] for k in case.recomputed), case.read_only)
    return run, filled


@contextmanager
def read_only(folder: Path):
    """A folder nothing can be added to or removed from: chmod for a user; for root, whom
    permission bits do not stop, the immutable attribute (needs CAP_LINUX_IMMUTABLE)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = ["chattr", "-i", str(folder)]
    else:
        pytest.skip("cannot make a folder read-only here (root without CAP_LINUX_IMMUTABLE)")
    try:
        with pytest.raises(OSError):  # the control: the folder really refuses a new file
            (folder / "probe").write_text("x")
        yield
    finally:
        subprocess.run(undo, check=True)


@contextmanager
def maybe_read_only(run: Path, case: Case):
    if case.read_only:
        with read_only(run / "cells"):
            yield
    else:
        yield


def stamps(folder: Path) -> dict[str, tuple]:
    """inode, mtime and SHA-256 of every file under ``folder``: a rewrite changes at least one. The
    run lock is left out: every sweep writes its pid there."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).digest())
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def numbers(run: Path) -> pd.DataFrame:
    df = pd.read_csv(run / "summary.csv")
    return df[[c for c in df.columns if not c.endswith("_seconds") and c != "seconds_per_image"]]


def naming(lines: list[str], path: Path) -> list[str]:
    return [line for line in lines if str(path) in line]


def test_verify_names_the_damaged_file(damaged):
    run, case = damaged
    before = stamps(run)
    with maybe_read_only(run, case):
        code, out, err = invoke("verify", run)
    rows = [line.split(None, 2) for line in out.splitlines()[1:-1]]
    problems = [r for r in rows if r[0] != "ok"]
    if case.status == "ok":
        assert code == 0 and not problems and not err, out
        assert any(r[1] == case.file and case.words in r[2] for r in rows), out
    else:
        assert code == 1 and len(problems) == 1, out
        status, path, reason = problems[0]
        assert (status, path) == (case.status, case.file) and case.words in reason, out
    assert stamps(run) == before  # verify writes nothing


def test_report_leaves_damaged_cells_out_and_names_them(damaged):
    run, case = damaged
    kept = {k: v for k, v in stamps(run).items() if not k.startswith("report")}
    with maybe_read_only(run, case):
        strict_code, _, strict_err = invoke("report", run, "--no-examples", "--strict")
        code, _, err = invoke("report", run, "--no-examples")
    assert {k: v for k, v in stamps(run).items() if not k.startswith("report")} == kept
    if case.file == "manifest.json":  # no report without the run's spec: one line saying how to proceed
        for c, e in ((code, err), (strict_code, strict_err)):
            assert c == 2 and len(e) == 1 and e[0].startswith(f"error: {run / 'manifest.json'} is damaged"), e
            assert "--run run" in e[0]
        return
    lines = naming(err, run / case.file)
    if not case.recomputed:  # a stray file or a legacy cell is no damage to the results
        assert code == strict_code == 0 and not lines, err
        return
    assert strict_code == 2 and len(naming(strict_err, run / case.file)) == 1, strict_err
    assert strict_err[-1].startswith(f"error: {run}: 1 cell(s) left out") and "--strict" in strict_err[-1], strict_err
    assert code == 0 and len(lines) == 1 and case.words in lines[0] and "left out" in lines[0], err
    note = (run / "report.md").read_text()
    assert "Left out of this report" in note and case.file in note


def test_resume_recomputes_exactly_the_damaged_cells(damaged, runs, GRID):
    run, case = damaged
    before, evidence = stamps(run / "cells"), (run / case.file).read_bytes() if (run / case.file).is_file() else None
    sweep = ["sweep", *GRID, "--out", run.parent, "--run", run.name]
    if case.read_only:  # one line, exit 2, nothing touched; once writable, the resume goes on as usual
        with read_only(run / "cells"):
            code, _, err = invoke(*sweep)
            assert code == 2 and len(err) == 1 and err[0].startswith("error: cannot write to output directory"), err
            assert stamps(run / "cells") == before and not (run / "damaged").exists()
    code, _, err = invoke(*sweep)
    assert code == 0, err
    moved = [line for line in err if "moved to" in line]
    if case.status in ("ok", "missing"):  # nothing to set aside: a missing manifest is written anew
        assert not moved, err
    else:
        assert len(moved) == 1 and naming(moved, run / case.file) == moved and case.words in moved[0], err
        assert [p.read_bytes() for p in (run / "damaged").glob(f"*/{case.file}")] == [evidence]  # kept, not deleted
    after = stamps(run / "cells")
    rewritten = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    expected = {f"{c}.{ext}" for c in case.recomputed for ext in ("json", "parquet")}
    expected |= {f"{c}.examples.npz" for c in case.recomputed if f"{c}.examples.npz" in after}  # stored with its cell
    if case.status != "ok" and case.file.startswith("cells/"):
        expected.add(case.file.removeprefix("cells/"))  # a stray file: moved aside, nothing recomputed
    assert rewritten == expected
    pd.testing.assert_frame_equal(numbers(run), numbers(runs["ref"]), check_exact=True)
    code, out, _ = invoke("verify", run)
    assert code == 0, out


def test_check_names_the_damaged_file(damaged):
    """`hbbench check` on a damaged run: one line naming the file, exit 2, nothing written; on a run
    whose damage does not touch the results (a stray file, a legacy cell) it runs."""
    run, case = damaged
    before = stamps(run)
    with maybe_read_only(run, case):
        code, _, err = invoke("check", run, "--checks", "default")
    if case.status == "ok" or (case.file.startswith("cells/") and not case.recomputed):
        assert code == 0, err
        return
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {run / case.file}"), err
    assert case.words in err[0] or case.file == "manifest.json", err
    assert stamps(run) == before


def test_damaged_manifest_with_cells_of_another_spec_is_refused(runs, tmp_path, GRID):
    """Without a readable manifest, the cells' spec id guards the run: another command is refused
    (one line, nothing moved) instead of setting every cell aside as foreign."""
    run = tmp_path / "run"
    shutil.copytree(runs["ref"], run)
    _truncate(run / "manifest.json")
    before = stamps(run)
    code, _, err = invoke("sweep", *GRID, "--defense", "none", "--out", tmp_path, "--run", "run")
    assert code == 2 and len(err) == 1 and "made by another spec" in err[0] and "manifest.json" in err[0], err
    assert stamps(run) == before


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir(), lambda p: (p.mkdir(), (p / "x").write_text(""))],
                         ids=["no-such-path", "empty-folder", "folder-without-cells"])
def test_verify_outside_a_run_directory_is_one_line_exit_2(tmp_path, make):
    make(tmp_path / "d")
    code, out, err = invoke("verify", tmp_path / "d")
    assert code == 2 and not out and len(err) == 1 and "is not a run directory" in err[0], err


def test_sharded_cells_record_their_integrity_too(runs, tmp_path, GRID):
    """Cells merged from shards carry the same record; a Parquet whose JSON never came while its
    shards are still there is a merge a kill interrupted (the resume merges it again), not damage."""
    from hbbench.integrity import MISSING, inspect_cell

    one_budget = ["--attacks", "fgsm", "--eps", "4/255", "--threat", "oblivious"]  # 2 cells of 2 shards
    code, _, err = invoke("sweep", *GRID, *one_budget, "--shard-size", "1", "--out", tmp_path, "--run", "sharded")
    assert code == 0, err
    code, out, _ = invoke("verify", tmp_path / "sharded")
    assert code == 0, out
    run = tmp_path / "sharded"
    summary = pd.read_csv(run / "summary.csv")
    b = summary.cell_id[(summary.defense == "jpeg") & (summary.attack != "worst_case")].item()
    (run / "cells" / f"{b}.json").unlink()
    (run / "cells" / f"{b}.shards").mkdir()
    assert inspect_cell(run, b, None).status == MISSING
