"""The report's opening (what was run: model, data, images, threat models, exact command) and its
closing notes (what the numbers mean and where they come from)."""
from __future__ import annotations

import datetime as dt
import json

from hbbench.threats import get_threat_model
from hbbench.report.checks import model_sanity_first
from hbbench.report.data import Run
from hbbench.report.document import Doc, esc, md_esc


def header(doc: Doc, run: Run, colors: dict):
    m, spec, df = run.manifest, run.spec, run.summary
    doc.heading(1, f"Robustness report: {run.model} on {run.dataset}")
    model_sanity_first(doc, run)
    weights = m.get("model_weights") or {}
    for label in run.models:
        if weights.get(label) == "random weights":
            doc.para(f"{label} runs with random weights: an untrained network, benchmarked on purpose "
                     "(weights=random).", cls="note")
    n = int(df.n.iloc[0])
    seed = m.get("seed", spec.get("seed"))
    date = m.get("finished") or m.get("last_started") or m.get("started") or "unknown"
    grid = ([run.models] if len(run.models) > 1 else []) + [run.attacks, run.defenses, run.threat_models]
    doc.para(f"Run {run.root.name} — {n} images, seed {seed}, {len(df)} cells ({' × '.join(map(', '.join, grid))}), "
             f"finished {date}. Report generated "
             f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}.")
    if m.get("status") != "complete":
        doc.para(f"This run's status is '{m.get('status', 'unknown')}': it is not complete, and the report shows "
                 f"only the {len(df)} cells that finished.", cls="note")
    if n < 50:
        doc.para(f"With {n} images one image moves a top-1 accuracy by {1 / n:.3f}; read the 95% bootstrap "
                 "intervals before ranking defenses.", cls="note")
    named = ", ".join(f"{label} ({weights[label]})" if label in weights else label for label in run.models)
    rows = [["models" if len(run.models) > 1 else "model", named], ["dataset", run.dataset],
            ["images (n)", str(n)], ["seed", str(seed)], ["started", str(m.get("started", "?"))],
            ["finished", str(m.get("finished", "?"))], ["status", str(m.get("status", "?"))],
            ["run directory", str(run.root.resolve())], ["git revision", str(m.get("git_revision") or "unknown")],
            ["python / platform", f"{m.get('python', '?')} / {m.get('platform', '?')}"]]
    if spec.get("model_params"):
        rows.append(["model parameters", json.dumps(spec["model_params"], sort_keys=True)])
    if spec.get("dataset_params"):
        rows.append(["dataset parameters", json.dumps(spec["dataset_params"], sort_keys=True)])
    doc.table(["run", "value"], rows, table_id="run-info")
    versions = m.get("versions") or {}
    if versions:
        doc.para("Package versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items()) + ".")
    doc.para("Exact command:")
    doc.code(str(m.get("command", "unknown")))
    doc.para("Threat models in this run (every result below names its threat model):")
    doc.bullets([f"{t}: {get_threat_model(t).description}." for t in run.threat_models])
    swatches = " ".join(f'<span class="swatch" style="background:{c}"></span>{esc(d)}' for d, c in colors.items())
    doc.raw(f"<p>Defense colours, the same in every plot: {swatches}</p>",
            "Defense colours, the same in every plot: " + ", ".join(f"{md_esc(d)} {c}" for d, c in colors.items())
            + "\n")


def footer(doc: Doc, run: Run):
    doc.heading(2, "About these numbers", "about")
    doc.bullets([
        "Top-1: fraction of images whose highest-scoring class is the true label. Defended adversarial top-1 "
        "applies the defense to the adversarial image before classifying it.",
        "NDCG: ranking agreement of the defended adversarial output with the clean output, relevance = clean "
        "probabilities (Brama & Grinshpoun, arXiv 2003.07573); MRR: mean of 1 / rank of the true class "
        "(arXiv 2201.05071).",
        "Intervals: 95% percentile bootstrap over images (1000 resamples, seed 0). Those of defended adversarial "
        "top-1 and NDCG are summary.csv's *_ci_low/high columns; those of the clean-accuracy cost, which "
        "summary.csv does not hold, are computed here from the per-sample records in cells/*.parquet.",
        f"Sources: {run.root.name}/summary.csv, manifest.json and cells/ (cell ids in the HTML table cells' "
        "data-cell-id attributes).",
    ])
