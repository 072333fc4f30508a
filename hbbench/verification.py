"""A whole run directory checked against its grid: which files a resume sets aside, and what
`hbbench verify` reports. The grid says which cells to expect (the grid's, and those the costly checks
and remedies may add); hbbench.integrity inspects each file."""
from __future__ import annotations

from hbbench.checks.remedies import run_cells
from hbbench.errors import HBBenchError
from hbbench.grid import resolve_manifest
from hbbench.options import DEFAULT_BUDGETS, CheckBudgets
from hbbench.integrity import (CELL_FILE, DAMAGED, FOREIGN, OK, Finding, cells_spec_ids, inspect_cells,
                               manifest_finding)
from hbbench.rundir import MANIFEST, RunDir, load_json


def to_set_aside(run: RunDir, grid) -> list[Finding]:
    """Before a resume of ``grid`` in ``run``: the damaged and foreign files, whose cells then count
    as unfinished. A run whose intact manifest holds another spec: none (the sweep refuses it, naming
    the difference). Without a readable manifest, cells that record another spec (and none of this
    grid's) mean another command made the run: refused rather than set aside."""
    root = run.root
    manifest = load_json(run.manifest_path)[0] if run.manifest_path.is_file() else None
    if manifest is not None and manifest.get("spec") != grid.spec_dict():
        return []
    finding = manifest_finding(run)
    if manifest is None:
        recorded = cells_spec_ids(root)
        if recorded and grid.id not in recorded:
            raise HBBenchError(f"{run.manifest_path}: {finding.reason}, and the cells in {root} were made by another "
                               f"spec ({', '.join(recorded)}; this command's is {grid.id}): run the command that "
                               f"made this run (same options, --run {root.name}), or use another --run name")
    findings = [finding] if finding.status == DAMAGED else []
    expected = expected_cells(grid, CheckBudgets.from_record((manifest or {}).get("check_budgets")))
    return findings + [f for f in inspect_cells(root, grid.id, *expected) if f.status in (DAMAGED, FOREIGN)]


def verify_run(run_dir) -> tuple[str | None, list[Finding]]:
    """(the run's spec id, a finding for the manifest and each cell or stray file). Expected cells
    come from the manifest's spec (its plugins loaded first); without a readable one, from the cell
    files present, checked against the spec id most of them record."""
    run = RunDir.open(run_dir)
    root = run.root
    finding = manifest_finding(run)
    spec_id = cell_ids = None
    optional = ()
    if finding.status == OK:
        manifest = load_json(run.manifest_path)[0]
        try:
            grid = resolve_manifest(manifest, str(run.manifest_path))
        except (KeyError, TypeError, ValueError, HBBenchError) as exc:
            finding = Finding(DAMAGED, MANIFEST, f"its spec cannot be read ({exc})")
        else:
            budgets = CheckBudgets.from_record(manifest.get("check_budgets"))  # the run's, recorded when not the defaults
            spec_id, (cell_ids, optional) = grid.id, expected_cells(grid, budgets)
            if manifest.get("spec_id") != spec_id:
                finding = Finding(DAMAGED, MANIFEST, f"its spec_id {manifest.get('spec_id')} is not its spec's "
                                                     f"({spec_id}): edited?")
    if cell_ids is None:
        recorded = cells_spec_ids(root).most_common(1)
        spec_id = recorded[0][0] if recorded else None
        cell_ids = sorted({m.group(1) for p in (root / "cells").iterdir()
                           if (m := CELL_FILE.match(p.name)) and m.group(2) != "shards"}) \
            if (root / "cells").is_dir() else []
        finding = Finding(finding.status, MANIFEST, f"{finding.reason}; its cells record spec {spec_id}: run the "
                          f"`hbbench sweep` command that made this run with --run {root.name} to write it anew")
    return spec_id, [finding] + inspect_cells(root, spec_id, cell_ids, optional)


def expected_cells(grid, budgets: CheckBudgets = DEFAULT_BUDGETS) -> tuple[list[str], list[str]]:
    """(the grid's cell ids, the ids of cells the costly checks may have added with ``budgets``)."""
    return [c.id for c in grid.cells], [c.id for c in run_cells(list(grid.cells), budgets)[len(grid.cells):]]
