"""``hbbench leaderboard DIR...``: one table over every run under the folders, one row per model x
dataset x image sample x defense x threat model x budget: clean top-1 with and without the defense,
worst-case robust top-1 with its 95% interval, the verdict, n, the attacks counted and what they cost
per image. Written as leaderboard.csv, .md and a self-contained .html.

The query engine is pandas: a leaderboard is a few hundred summary rows, the runs are read through
hbbench.runs (the one reader of a run directory) and pandas is already a dependency; DuckDB would
add a dependency to read what the reader already holds in memory."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from hbbench.errors import HBBenchError
from hbbench.labels import eps_label
from hbbench.passes import COSTS
from hbbench.report.document import Doc, ci, f3
from hbbench.rundir import atomic_write_text, find_runs
from hbbench.runs import load_run

VERIFIED = ("verified", "repaired")  # verdicts whose checks ran and did not fail: ranked first
COLUMNS = ["rank", "model", "dataset", "sample", "threat_model", "eps", "norm", "defense", "worst_top1",
           "worst_top1_ci_low", "worst_top1_ci_high", "verdict", "clean_top1", "defended_clean_top1", "n",
           "attacks", "forward_passes_per_image", "backward_passes_per_image", "seconds_per_image", "run"]
GROUP = ["model", "dataset", "sample", "threat_model", "norm", "eps"]  # rows ranked against each other
SETTING = ["model", "dataset", "sample", "threat_model", "norm", "eps", "defense"]  # one row each


def collect(folders) -> tuple[list, list[str]]:
    """The complete runs under ``folders``, and one 'name (why)' per run left out (in progress or
    damaged). HBBenchError when a folder is missing or no complete run is found."""
    paths = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise HBBenchError(f"no folder at {folder}")
        found = find_runs(folder)
        if not found:
            raise HBBenchError(f"no run under {folder} (no manifest.json); give run directories or folders "
                               "holding them")
        paths += [p for p in found if p not in paths]
    runs, left_out = [], []
    for path in paths:
        try:
            run = load_run(path)
        except HBBenchError as exc:
            left_out.append(f"{path} ({exc})")
            continue
        if run.status != "complete":
            left_out.append(f"{path} (in progress: status {run.status})")
        elif run.damaged:
            left_out.append(f"{path} (damaged: {len(run.damaged)} cell(s); `hbbench verify {path}` names them)")
        else:
            runs.append(run)
    if not runs:
        raise HBBenchError(f"no complete run under {', '.join(map(str, folders))}; left out: {'; '.join(left_out)}")
    return runs, left_out


def verdict(checks, model: str, defense: str, threat: str, row_verdict=None) -> str:
    """not checked: no evaluation check ran for the row; else the worst-case row's own verdict in one
    word (verified, repaired, unverified: hbbench.checks.worst_case; an older run's "holds" reads as
    verified through hbbench.schema), or for runs made before it was written, verified when no check
    failed and unverified when one did."""
    if checks is None or checks.empty:
        return "not checked"
    mine = checks[(checks.defense == defense) & (checks.threat_model == threat)]
    mine = mine[mine.model.astype(str) == model]
    if (mine.status == "not run").all():
        return "not checked"
    if isinstance(row_verdict, str):
        return next((word for word in VERIFIED if row_verdict.startswith(word)), "unverified")
    return "unverified" if (mine.status == "fail").any() else "verified"


def run_rows(run) -> list[dict]:
    """One row per model x defense x threat model x budget of ``run``: its worst-case row, or its one
    attack's row where it has one attack at that budget. Attacks without a budget are left out."""
    summary, sample, finished = run.summary, run.sample, run.manifest.get("finished") or ""
    cells = summary[(summary.attack != "worst_case") & summary.eps.notna()]
    if "audit" in cells:  # a cell whose examples failed the audit (hbbench.audit) is compared with nothing
        cells = cells[cells.audit != "invalid"]
    worst = summary[summary.attack == "worst_case"]
    out = []
    for (model, defense, threat, eps), group in cells.groupby(["model", "defense", "threat_model", "eps"], sort=False):
        wc = worst[(worst.model == model) & (worst.defense == defense) & (worst.threat_model == threat)
                   & (worst.eps == eps)]
        if not wc.empty:  # its attacks and cost count every attack of the worst case, the remedies' too
            row = wc.iloc[0]
            attacks = row.attack_gradient.removeprefix("worst of: ")
        elif len(group) == 1:
            row = group.iloc[0]
            attacks = f"{row.attack} ({row.threat_model})"
        else:
            continue  # several attacks and no worst case: an unfinished grid (never in a complete run)
        out.append({"model": str(model), "dataset": row.dataset, "sample": sample, "threat_model": threat,
                    "eps": eps, "norm": str(row.norm), "defense": defense,
                    "worst_top1": row.defended_adv_top1, "worst_top1_ci_low": row.defended_adv_top1_ci_low,
                    "worst_top1_ci_high": row.defended_adv_top1_ci_high,
                    "verdict": verdict(run.checks, str(model), defense, threat, row.get("verdict")),
                    "clean_top1": row.clean_top1,
                    "defended_clean_top1": row.defended_clean_top1, "n": int(row.n),
                    "attacks": attacks, **{k: row.get(k, float("nan")) for k in COSTS},
                    "run": run.name, "_finished": finished})
    return out


def table(runs) -> pd.DataFrame:
    """The leaderboard of ``runs``: the newest run wins a setting several runs hold; within each
    model, dataset, image sample, threat model and budget, verified rows first, then by worst-case
    top-1, best first (ties by defense name); ``rank`` counts within that group."""
    df = pd.DataFrame([r for run in runs for r in run_rows(run)])
    df = df.sort_values(["_finished", "run"]).drop_duplicates(SETTING, keep="last")
    df["_unverified"] = ~df.verdict.isin(VERIFIED)
    df = df.sort_values([*GROUP, "_unverified", "worst_top1", "defense"],
                        ascending=[True] * len(GROUP) + [True, False, True])
    df["rank"] = df.groupby(GROUP, sort=False).cumcount() + 1
    return df[COLUMNS].reset_index(drop=True)


def write(df, out: Path, left_out: list[str]) -> list[Path]:
    """leaderboard.csv, .md and .html in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "leaderboard.csv", df.to_csv(index=False))
    doc = Doc(out / "leaderboard_files")
    doc.heading(1, "hbbench leaderboard")
    doc.para("One row per model × dataset × image sample × threat model × ε × defense; ranked within each model, "
             "dataset, sample, threat model and ε: verified rows (checks ran and none failed) first, then by "
             "worst-case robust top-1. Cost: network passes and attack seconds per image, summed over the attacks "
             "counted. Runs on other data or images are ranked apart; the newest run wins a repeated setting.")
    if left_out:
        doc.para("Left out (in progress or damaged): " + "; ".join(left_out) + ".", cls="note")
    header = ["#", "model", "dataset", "sample", "threat model", "ε", "defense", "worst-case top-1 [95% CI]",
              "verdict", "clean top-1", "clean top-1 defended", "n", "attacks", "fwd / img", "bwd / img",
              "s / img", "run"]
    rows = [[r.rank, r.model, r.dataset, r.sample, r.threat_model, eps_label(r.eps), r.defense,
             f"{f3(r.worst_top1)} {ci(r.worst_top1_ci_low, r.worst_top1_ci_high)}", r.verdict, f3(r.clean_top1),
             f3(r.defended_clean_top1), r.n, r.attacks, _num(r.forward_passes_per_image, "g"),
             _num(r.backward_passes_per_image, "g"), _num(r.seconds_per_image, ".3f"), r.run] for r in df.itertuples()]
    doc.table(header, rows, table_id="leaderboard")
    paths = [out / "leaderboard.csv", out / "leaderboard.html", out / "leaderboard.md"]
    doc.write(paths[1], paths[2], "hbbench leaderboard")
    return paths


def _num(value, spec: str) -> str:
    return "—" if value != value else format(value, spec)  # NaN: a run from before costs were recorded
