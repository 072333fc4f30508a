"""``build_report(run_dir)``: turn one run directory into a report a person reads.

Writes ``report.html`` (self-contained: every plot is a base64 PNG data URI, no script, no network)
and ``report.md`` (the same content; its PNGs lie beside it in ``report_files/``). The report renders
what the run stored and re-runs nothing: ``summary.csv`` gives the cells, their values and their 95%
bootstrap intervals; the per-sample Parquet records give what it does not hold (rank distributions,
the clean-cost intervals); the example panels, the adversarial examples the sweep stored
(``--save-examples``). No attack runs; only the Heat-and-Blur explanation figure runs the model, for
its heatmaps (``examples=False`` skips panels and figure).

Modules: ``data`` (loading a run), ``document`` (HTML + Markdown), ``overview``, ``models`` (a model
grid's comparison), ``checks`` (worst case and evaluation checks), ``verdicts``, ``tables``, ``figures``
and ``examples`` (the sections, in the order the report shows them). A model grid's report compares
the models first, then shows each model's sections on that model's rows only.
"""
from __future__ import annotations

from pathlib import Path

import hbbench.report.plots as P
from hbbench.errors import HBBenchError
from hbbench.report.checks import worst_case_and_checks
from hbbench.report.data import Run, load_run, model_slugs
from hbbench.report.document import Doc
from hbbench.report.examples import examples as example_section
from hbbench.report.figures import curves, rank_shift, scatter
from hbbench.report.models import models_compared
from hbbench.report.overview import footer, header
from hbbench.report.tables import clean_costs, cost_tables, main_tables
from hbbench.report.verdicts import verdicts

__all__ = ["build_report"]


def build_report(run_dir: str | Path, examples: bool = True, n_examples: int = 3, device: str = "cpu",
                 on_progress=None, strict: bool = False) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ ``report_files/``) into ``run_dir``; return their paths.

    ``examples=False`` skips the example panels (drawn from the run's stored adversarial examples) and
    the Heat-and-Blur explanation figure (the only part that loads the model, on ``device``, for its
    heatmaps); a run that stored no examples gets a sentence saying so instead.
    Cells whose files are damaged are left out, one ``on_progress`` line each and a note in the
    report; ``strict=True`` refuses to write a report then."""
    say = on_progress or (lambda msg: None)
    run = load_run(run_dir)
    for label, finding in run.damaged.values():
        say(f"{run.root / finding.path}: {finding.reason} ({label}); left out of this report")
    if strict and run.damaged:
        raise HBBenchError(f"{run.root}: {len(run.damaged)} cell(s) left out (damaged or another run's) and --strict "
                           "is set: no report written; the sweep command that made the run recomputes them")
    doc = Doc(run.root / "report_files")
    colors = P.defense_colors(run.defenses)

    say("tables")
    header(doc, run, colors)
    if run.damaged:
        doc.para("Left out of this report because their files are damaged (the sweep command that made the run "
                 "recomputes them): " + "; ".join(f"{label} — {f.path}: {f.reason}" for label, f in
                                                   run.damaged.values()) + ".", cls="note")
    if len(run.models) == 1:
        _sections(doc, run, colors, examples, n_examples, device, say)
    else:
        models_compared(doc, run, colors)
        for label, slug in model_slugs(run.models).items():
            doc.heading(2, f"Model: {label}", f"model-{slug}")
            with doc.scope(f"model-{slug}--"):  # "--" ends the slug: no model's names meet another's
                _sections(doc, run.for_model(label), colors, examples, n_examples, device,
                          lambda msg, label=label: say(f"{label}: {msg}"))
    footer(doc, run)

    html_path, md_path = run.root / "report.html", run.root / "report.md"
    doc.write(html_path, md_path, f"hbbench report — {run.model} on {run.dataset} — {run.root.name}")
    return html_path, md_path


def _sections(doc: Doc, run: Run, colors: dict, examples: bool, n_examples: int, device: str, say):
    """The sections of one model's rows, from the worst case to the costs."""
    costs = clean_costs(run)
    worst_case_and_checks(doc, run)
    verdicts(doc, run, costs)
    main_tables(doc, run, costs)
    say("plots")
    curves(doc, run, colors, costs)
    scatter(doc, run, colors, P.label_markers(run.attacks))
    rank_shift(doc, run)
    if examples:
        say("example images (the run's stored adversarial examples)")
        example_section(doc, run, n_examples, device)
    else:
        doc.heading(2, "Examples", "examples")
        doc.para("Example panels were skipped (--no-examples).")
    cost_tables(doc, run)
