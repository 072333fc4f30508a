"""Reliability of the ``hbbench sweep`` command, exercised as a user would: real sweeps in
subprocesses, killed with SIGKILL or interrupted with SIGINT (Ctrl-C) after some cells finished,
then resumed with the same command; two sweeps on one run directory; a resumed run with changed
parameters; unsafe weights; the same command twice.

Every sweep here runs the same 12-cell grid (FGSM and PGD with a random start x none/jpeg/noise
x oblivious/bpda; under bpda the random noise defense sits inside the attack loop) on 2 embedded
images with one torch thread: numbers are bit-identical between runs with the same thread count,
so summaries are compared exactly (except the *_seconds columns)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from hbbench.cli import main
from tests.conftest import cli_runner

pytestmark = pytest.mark.slow


GRID = ["--n", "2", "--attacks", "fgsm,pgd[max_iter=2,num_random_init=1]",
        "--defense", "jpeg,noise", "--threat", "oblivious,bpda", "--batch-size", "2", "--device", "cpu", "--seed", "0"]
N_CELLS = 2 * 3 * 2
# One torch thread: fast on a shared 2-core machine, and reductions in a fixed order. COLUMNS keeps
# rich from wrapping the progress lines, so the messages can be matched.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "400"}
TIMEOUT = 150


def _args(out: Path, *extra: str) -> list[str]:
    return ["sweep", *GRID, "--out", str(out), *extra]


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hbbench.cli", *_args(out, *extra)]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(_command(out, *extra), env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done


def _run_here(out: Path, *extra: str) -> str:
    """The same command in this process (what is tested is the command, not a fresh process; the
    interrupted sweeps and the same-seed rerun are processes of their own), on one torch thread as
    ENV gives the processes: its stderr."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = cli_runner().invoke(main, _args(out, *extra), env={"COLUMNS": "400"})
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stderr


def _start(out: Path, logs: Path, *extra: str) -> subprocess.Popen:
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        # A shell that starts a job in the background ignores SIGINT for it, and the child inherits
        # that: Python then installs no KeyboardInterrupt handler. The sweep gets SIGINT as a user's.
        return subprocess.Popen(_command(out, *extra), env=ENV, stdout=stdout, stderr=stderr,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _finished_cells(out: Path) -> set[str]:
    """Cells that count as done: both <id>.parquet and <id>.json exist."""
    return {p.stem for p in out.glob("*/cells/*.json") if p.with_suffix(".parquet").is_file()}


def _wait_for(condition, proc: subprocess.Popen, logs: Path, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"sweep ended (rc {proc.returncode}) before {what}: {(logs / 'stderr').read_text()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _stamps(run_dir: Path, cells: set[str]) -> dict[str, tuple[int, int]]:
    files = [run_dir / "cells" / f"{c}.{ext}" for c in cells for ext in ("json", "parquet")]
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files}


def _numbers(run_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(run_dir / "summary.csv")
    return df[[c for c in df.columns if not c.endswith("_seconds") and c != "seconds_per_image"]]


def _grid_ids(run_dir: Path) -> set[str]:
    """The cells summary.csv lists (its worst-case rows are computed from them, not cells)."""
    df = pd.read_csv(run_dir / "summary.csv")
    return set(df.cell_id[df.attack != "worst_case"])


def _one_run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the grid (--run a)."""
    out = tmp_path_factory.mktemp("reference")
    _run_here(out, "--run", "a")
    return out / "a"


def _interrupt_and_resume(reference: Path, tmp_path: Path, sig: int) -> tuple[int, str, set[str]]:
    """Start the sweep, wait until >= 2 cells are on disk, send ``sig``, plant leftovers a killed
    writer could leave, resume with the same command, check that finished cells were kept as they
    were and the summary equals the uninterrupted run. Returns (exit code, stderr, cells kept)."""
    out = tmp_path / "results"
    proc = _start(out, tmp_path / "logs")  # default run name: the same command finds the same run
    _wait_for(lambda: len(_finished_cells(out)) >= 2, proc, tmp_path / "logs", "two finished cells")
    proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    stderr = (tmp_path / "logs" / "stderr").read_text()
    run_dir = _one_run_dir(out)
    kept = _finished_cells(out)
    assert 2 <= len(kept) < N_CELLS, "the interruption must land mid-run for this test to mean anything"
    stamps = _stamps(run_dir, kept)
    if sig in (signal.SIGINT, signal.SIGTERM):  # an orderly stop: the summary of what is done, and the manifest says so
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
        assert _grid_ids(run_dir) == kept

    # What a writer killed mid-write leaves: temporaries of atomic writes, and a cell's Parquet whose
    # JSON (written last) never came. None of it may be read as a result.
    unfinished = sorted(_grid_ids(reference) - kept)
    (run_dir / "cells" / f".{unfinished[0]}.json.x1y2.tmp").write_text('{"defended_adv_top1": 0.999')
    (run_dir / "cells" / f".{unfinished[0]}.parquet.x1y2.tmp").write_bytes(b"PAR1 half a file")
    (run_dir / ".summary.csv.x1y2.tmp").write_text("model,dataset\nbogus,row\n")
    (run_dir / "cells" / f"{unfinished[-1]}.parquet").write_bytes(b"PAR1 truncated")

    resumed = _run_here(out)
    # cells a killed run stored whole but had not yet merged may count too; none is recomputed
    already = re.search(rf"\((\d+) of {N_CELLS} cells already done\)", resumed)
    assert already and len(kept) <= int(already.group(1)) < N_CELLS, resumed
    assert _one_run_dir(out) == run_dir
    assert _stamps(run_dir, kept) == stamps  # finished cells were neither recomputed nor rewritten
    assert not list(run_dir.rglob("*.tmp"))  # leftovers cleaned
    assert len(pd.read_parquet(run_dir / "cells" / f"{unfinished[-1]}.parquet")) == 2  # recomputed
    pd.testing.assert_frame_equal(_numbers(run_dir), _numbers(reference), check_exact=True)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["resumed"] is True
    return rc, stderr, kept


def test_sigkill_then_same_command_resumes_without_recomputing(reference, tmp_path):
    rc, _, _ = _interrupt_and_resume(reference, tmp_path, signal.SIGKILL)
    assert rc == -signal.SIGKILL


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_or_sigterm_exits_says_how_to_resume_then_resumes(reference, tmp_path, sig, code):
    rc, stderr, _ = _interrupt_and_resume(reference, tmp_path, sig)
    assert rc == code
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: every finished cell is on disk in ") and \
        last.endswith("run the same command again to resume"), last


def test_second_sweep_on_the_same_run_is_refused(tmp_path):
    """The same command twice at once (same default run directory): the second is refused by the
    run lock with one line naming the holder; the first carries on."""
    import hbbench.api  # noqa: F401  (import ART & co. here first, so the second sweep is quick)

    out = tmp_path / "results"
    long_grid = ["--n", "2", "--attacks", "pgd[max_iter=500]", "--defense", "jpeg", "--threat", "oblivious",
                 "--batch-size", "2", "--device", "cpu"]
    with open(tmp_path / "stderr", "w") as stderr:
        first = subprocess.Popen([sys.executable, "-m", "hbbench.cli", "sweep", *long_grid, "--out", str(out)],
                                 env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        _wait_for(lambda: any(f"pid {first.pid}" in p.read_text() for p in out.glob("*/.lock")), first, tmp_path,
                  "the run lock")
        result = cli_runner().invoke(main, ["sweep", *long_grid, "--out", str(out)])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2, result.stdout + result.stderr
        assert len(lines) == 1 and "Traceback" not in result.stdout + result.stderr, lines
        assert lines[0].startswith("error: ") and "in use by a running sweep" in lines[0] \
            and f"pid {first.pid}" in lines[0], lines[0]
        assert first.poll() is None  # the first sweep was left alone
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("change,difference", [
    (["--n", "3"], "n: 2 -> 3"),
    (["--seed", "1"], "seed: 0 -> 1"),
    (["--defense", "jpeg[quality=50],noise"], "defenses: ['jpeg', 'noise'] -> ['jpeg[quality=50]', 'noise']"),
])
def test_resuming_with_changed_parameters_is_refused(reference, change, difference):
    before = {p.name: p.stat().st_mtime_ns for p in reference.rglob("*") if p.is_file() and p.name != ".lock"}
    result = cli_runner().invoke(main, ["sweep", *GRID, *change, "--out", str(reference.parent), "--run", "a"])
    lines = result.stderr.strip().splitlines()
    everything = result.stdout + result.stderr
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in everything, everything
    assert "holds a run with a different spec" in lines[0] and difference in lines[0], lines[0]
    assert "--run" in lines[0]  # says how to get out of it
    assert {p.name: p.stat().st_mtime_ns for p in reference.rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_cli_refuses_unsafe_weights_without_trust_checkpoint(tmp_path):
    marker = tmp_path / "payload-ran"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, evil)
    torch.load(evil, weights_only=False)  # the control: unpickled unsafely, the payload does run
    assert marker.is_dir()
    marker.rmdir()

    result = cli_runner().invoke(main, ["sweep", *GRID, "--model", "torchvision:resnet18", "--weights", str(evil),
                                       "--out", str(tmp_path / "results")])
    lines = result.stderr.strip().splitlines()
    everything = result.stdout + result.stderr
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in everything, everything
    assert "--trust-checkpoint" in lines[0] and "evil.pt" in lines[0], lines[0]
    assert not marker.exists()
    assert not list((tmp_path / "results").rglob("cells/*"))


def test_same_command_same_seed_same_numbers(reference):
    """Random starts (PGD num_random_init=1) and a random defense (noise) included."""
    _run(reference.parent, "--run", "b")
    again = reference.parent / "b"
    pd.testing.assert_frame_equal(_numbers(again), _numbers(reference), check_exact=True)
    table = pd.read_csv(reference / "summary.csv")
    table = table[table.attack != "worst_case"]
    assert {"noise", "none", "jpeg"} == set(table.defense) and {"oblivious", "bpda"} == set(table.threat_model)
    assert len(table) == N_CELLS
    for cell_id in table.cell_id:  # the per-sample records too, not only their means
        pd.testing.assert_frame_equal(pd.read_parquet(again / "cells" / f"{cell_id}.parquet"),
                                      pd.read_parquet(reference / "cells" / f"{cell_id}.parquet"), check_exact=True)
    # the noise defense really is random: its defended outputs differ from the clean ones
    noisy = table[table.defense == "noise"].iloc[0]
    records = pd.read_parquet(reference / "cells" / f"{noisy.cell_id}.parquet")
    assert not (records.def_clean_true_prob == records.clean_true_prob).all()
