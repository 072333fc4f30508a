"""What `hbbench sweep` and `hbbench check` show while they run and when they finish."""
from __future__ import annotations

import time

import click
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from hbbench.aggregate import markdown as summary_markdown
from hbbench.api import sweep as run_sweep
from hbbench.checks.table import failed, markdown as checks_markdown, model_unverified
from hbbench.labels import eps_label


def run_with_progress(grid, options):
    """Run ``hbbench.api.sweep(grid, options)`` with a progress bar on a terminal (one flushed line per
    finished cell elsewhere), then print the summary table and the checks that did not pass."""
    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console)
    state = {}

    def on_event(kind, cell=None, **info):
        if kind == "start":
            state["run_dir"] = info["run_dir"]
            console.print(f"run directory: {info['run_dir']}  ({info['done']} of {info['total']} cells already done)")
            state["overall"] = progress.add_task("cells x shards", total=info["total"], completed=info["done"])
            state["current"] = progress.add_task("loading model and data", total=None)
            state.update(total=info["total"], done=info["done"], resumed=info["done"], t0=time.monotonic())
        elif kind == "attack":
            eps = "" if cell.eps is None else f" eps={eps_label(cell.eps)}"
            target = f"{cell.defense} ({cell.threat_model})" if cell.crafts_against_defense else "undefended model"
            unit = info["unit"]
            progress.update(state["current"], description=f"attack {cell.attack}{eps} against {target}, "
                                                          f"samples {unit.start}-{unit.stop - 1}")
        elif kind == "defense":
            progress.update(state["current"], description=f"evaluate {cell.defense} ({cell.threat_model})")
        elif kind == "more":  # remedy cells planned after the grid's: the total grows, never the count past it
            state["total"] += info["added"]
            progress.update(state["overall"], total=state["total"])
            console.print(f"+{info['added']} {info.get('why', 'remedy')} cells (checks failed: "
                          f"hbbench.checks.remedies)", markup=False, highlight=False)
        elif kind == "shard_done":
            progress.advance(state["overall"])
            state["done"] += 1
            if not console.is_terminal:  # logs, CI, nohup: one flushed line per cell instead of a bar
                click.echo(_progress_line(cell, state), err=True)
            if (info.get("summary") or {}).get("audit") == "invalid":  # hbbench.audit: one line per invalid cell
                console.print(_invalid_line(cell, info["summary"]), markup=False, highlight=False, soft_wrap=True)
        elif kind == "checks":
            state["checks"] = info["table"]
        elif kind == "planned_check":  # a check that fails from the grid's parameters alone (budget_use)
            row = info["row"]
            console.print(f"{row['check']} {'failed' if row['status'] == 'fail' else 'warned'} before any image "
                          f"is attacked: {row['reason']}", markup=False, highlight=False, soft_wrap=True)
        elif kind == "damaged":  # one line per damaged or foreign file found on resume
            console.print(f"{info['path']}: {info['reason']}; {info['action']}", markup=False, highlight=False,
                          soft_wrap=True)

    with progress:
        try:
            table = run_sweep(grid, options, on_event)
        except KeyboardInterrupt as exc:
            exc.run_dir = state.get("run_dir")  # named in the "run the same command again" line
            raise
        progress.update(state["current"], visible=False)
    click.echo(summary_markdown(table))
    _echo_checks(state.get("checks"), _settled(table))
    _echo_verdicts(table)
    console.print(f"wrote {state['run_dir']}/: summary.csv, summary.md, checks.csv, checks.md, manifest.json, cells/")


def _settled(table) -> set:
    """(model, defense, threat model) of each setting whose worst-case rows carry the final verdict
    (after its remedies): its checks' "unverified:" line would state what came before."""
    if "verdict" not in table:
        return set()
    rows = table[table.verdict.notna() & (table.verdict != "verified")]
    return {(str(r.model), r.defense, r.threat_model) for r in rows.itertuples()}


def _echo_verdicts(table) -> None:
    """The final line of each setting: one line per worst-case row whose verdict is not "verified"
    (repaired or unverified: hbbench.checks.worst_case), after the remedies ran."""
    if "verdict" not in table:
        return
    for r in table[table.verdict.notna() & (table.verdict != "verified")].itertuples():
        click.echo(f"worst case {r.defense} under {r.threat_model} at {eps_label(r.eps)} on {r.model}: "
                   f"{r.defended_adv_top1:.2f} — {r.verdict}")


def _progress_line(cell, state) -> str:
    elapsed = time.monotonic() - state["t0"]
    new, left = state["done"] - state["resumed"], max(state["total"] - state["done"], 0)
    eta = f", about {_duration(elapsed / new * left)} left" if left and new > 0 else ""
    eps = "" if cell.eps is None else f" eps={eps_label(cell.eps)}"
    return (f"[{state['done']}/{state['total']}] {cell.attack}{eps} x {cell.defense} ({cell.threat_model}) done; "
            f"{_duration(elapsed)} elapsed{eta}")


def _invalid_line(cell, summary: dict) -> str:
    """The line of a cell whose examples failed the audit (hbbench.audit): what it left out and why."""
    eps = "" if cell.eps is None else f" eps={eps_label(cell.eps)}"
    return (f"invalid: {cell.attack}{eps} x {cell.defense} ({cell.threat_model}) returned examples outside the "
            f"rules ({summary.get('audit_reason')}); left out of the worst case and the comparisons "
            "(check budget)")


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s" if m else f"{s}s"


def _echo_checks(table, settled: set = frozenset()) -> None:
    """The checks' counts and failures; an "unverified:" line only for a setting without a final
    worst-case line (``settled``: hbbench.progress._settled)."""
    if table is None or table.empty:
        return
    models = list(dict.fromkeys(table.model)) if "model" in table else [None]
    for model in models:  # first: a model that does not classify the images voids all its numbers
        unverified = model_unverified(table, model, named=len(models) > 1)
        if unverified:
            click.echo(unverified)
    counts = table.status.value_counts()
    shown = table[table.status.isin(["fail", "warn"])]
    click.echo(f"\nEvaluation checks (docs/evaluation.md): {counts.get('fail', 0)} failed, {counts.get('warn', 0)} "
               f"warned, {counts.get('pass', 0)} passed, {counts.get('not run', 0)} not run; all of them in checks.md")
    if not shown.empty:
        click.echo(checks_markdown(shown))
    for model in models:
        if model_unverified(table, model):
            continue
        on = f" on {model}" if len(models) > 1 else ""
        for (defense, threat), names in failed(table, model).items():
            if (str(model), defense, threat) in settled or (len(models) == 1 and
                                                          any(s[1:] == (defense, threat) for s in settled)):
                continue  # its worst-case line below says what the remedies made of it
            click.echo(f"unverified: {defense} under {threat}{on} — {', '.join(names)} failed")
