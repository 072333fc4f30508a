"""``build_report(run_dir)``: turn one run directory into a report a person reads.

Writes ``report.html`` (self-contained: every plot is a base64 PNG data URI, no script, no network)
and ``report.md`` (the same content; its PNGs lie beside it in ``report_files/``). Every number comes
from the run's own files: ``summary.csv`` names the cells, the per-sample Parquet records give the
values and their 95% bootstrap intervals (``hbbench.metrics.bootstrap_ci``, seed 0, as the sweep
uses), so the report agrees with summary.csv. Only the example panels recompute anything: adversarial
images are not stored, so a few are regenerated from the manifest's spec (``examples=False`` skips it).
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hbbench import plots as P
from hbbench.errors import HBBenchError
from hbbench.integrity import damaged_cells
from hbbench.metrics import bootstrap_ci

THREAT_ORDER = ("oblivious", "bpda", "adaptive")
THREAT_WORDS = {
    "oblivious": "adversarial examples are crafted against the undefended model; the defense is applied only "
                 "at prediction (the paper's setting)",
    "bpda": "adversarial examples are crafted against the defended model, with the defense replaced by the "
            "identity on the backward pass (BPDA)",
    "adaptive": "adversarial examples are crafted against the defended model through the defense's own "
                "gradient where it has one",
}
HOLD_MIN_GAIN = 0.10  # a defense "helps" when it adds at least this much top-1 over no defense
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;font-size:15px;
 line-height:1.45;color:#1a1a1a;background:#fff;max-width:1180px;margin:24px auto;padding:0 20px}
h1{font-size:26px;margin-bottom:4px}h2{font-size:20px;margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin-top:22px}
table{border-collapse:collapse;margin:10px 0 16px;font-size:13.5px}
th,td{border:1px solid #cfcfcf;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td .ci{color:#555;font-size:12px}td .sub{display:block;color:#333}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f6f6f6;padding:8px 10px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
figure{margin:12px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13.5px;color:#333;margin-top:4px}
.swatch{display:inline-block;width:11px;height:11px;border:1px solid #333;margin-right:4px;vertical-align:-1px}
.note{background:#fff7e0;border-left:4px solid #E69F00;padding:6px 10px}
.verdict{margin:4px 0}
"""


# ----------------------------------------------------------------------------------------------------
# Loading a run


@dataclass
class Run:
    root: Path
    manifest: dict
    summary: pd.DataFrame
    records: dict[str, pd.DataFrame]
    defenses: list[str] = field(default_factory=list)
    attacks: list[str] = field(default_factory=list)
    threats: list[str] = field(default_factory=list)
    damaged: dict = field(default_factory=dict)  # cell id -> (what it measured, Finding): left out


def load_run(run_dir: str | Path) -> Run:
    root = Path(run_dir)
    if not root.is_dir():
        raise HBBenchError(f"no run directory at {root}")
    manifest_path, summary_path = root / "manifest.json", root / "summary.csv"
    if not manifest_path.is_file():
        raise HBBenchError(f"{root} is not a run directory (no manifest.json); run `hbbench sweep` first")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HBBenchError(f"{manifest_path} is damaged ({exc}); `hbbench verify {root}` shows the spec its "
                           f"cells record; the sweep command that made the run, with --run {root.name}, writes it "
                           "anew") from None
    if not summary_path.is_file():
        raise HBBenchError(f"run {root} has no summary.csv yet (no cell finished); run the sweep again to resume")
    try:
        summary = pd.read_csv(summary_path)
    except pd.errors.EmptyDataError:
        summary = pd.DataFrame()
    if summary.empty:
        raise HBBenchError(f"run {root} has no finished cells; run the sweep again to resume")
    damaged = damaged_cells(root, manifest.get("spec_id"), summary)
    summary = summary[~summary["cell_id"].isin(damaged)].reset_index(drop=True)
    if summary.empty:
        raise HBBenchError(f"run {root}: every cell's files are damaged; `hbbench verify {root}` names them")
    records = {}
    for cid in summary["cell_id"]:
        path = root / "cells" / f"{cid}.parquet"
        if not path.is_file():
            raise HBBenchError(f"run {root}: summary.csv names cell {cid} but {path} is missing")
        records[cid] = pd.read_parquet(path)
    run = Run(root, manifest, summary, records, damaged=damaged)
    spec = manifest.get("spec") or {}
    run.defenses = _spec_order(["none"] + list(spec.get("defenses") or []), summary["defense"])
    run.attacks = _spec_order(list(spec.get("attacks") or []), summary["attack"])
    present = set(summary["threat_model"])
    run.threats = [t for t in THREAT_ORDER if t in present] + sorted(present - set(THREAT_ORDER))
    return run


def _spec_order(preferred: list, present) -> list[str]:
    """The labels in ``present``, in the spec's (grid) order first, so colours follow the grid."""
    present = _ordered(present)
    return [p for p in dict.fromkeys(map(str, preferred)) if p in present] + \
        [p for p in present if p not in set(map(str, preferred))]


def _ordered(values) -> list[str]:
    return list(dict.fromkeys(values))


# ----------------------------------------------------------------------------------------------------
# Numbers from the records


def cell_stats(rec: pd.DataFrame) -> dict:
    """Means and 95% bootstrap intervals of one cell's records (seed 0, as ``records.summarize``)."""
    correct = (rec["def_adv_pred"] == rec["label"]).to_numpy(float)
    ndcg = rec["def_adv_ndcg"].to_numpy(float)
    out = {"r_top1": correct.mean(), "r_ndcg": ndcg.mean()}
    out["r_top1_lo"], out["r_top1_hi"] = bootstrap_ci(correct, seed=0)
    out["r_ndcg_lo"], out["r_ndcg_hi"] = bootstrap_ci(ndcg, seed=0)
    return out


def clean_cost(rec: pd.DataFrame) -> dict:
    """Clean top-1 with the defense, and its paired difference to the undefended model, with CIs."""
    clean = (rec["clean_pred"] == rec["label"]).to_numpy(float)
    defended = (rec["def_clean_pred"] == rec["label"]).to_numpy(float)
    out = {"clean": clean.mean(), "defended": defended.mean(), "delta": (defended - clean).mean(),
           "ndcg": rec["def_clean_ndcg"].to_numpy(float).mean()}
    out["defended_lo"], out["defended_hi"] = bootstrap_ci(defended, seed=0)
    out["delta_lo"], out["delta_hi"] = bootstrap_ci(defended - clean, seed=0)
    return out


def stats_table(run: Run) -> pd.DataFrame:
    df = run.summary.copy()
    stats = pd.DataFrame([cell_stats(run.records[c]) for c in df["cell_id"]], index=df.index)
    return pd.concat([df, stats], axis=1)


def _same_eps(a, b) -> bool:
    return (pd.isna(a) and pd.isna(b)) or (not pd.isna(a) and not pd.isna(b) and abs(a - b) < 1e-12)


def _budget_rows(df: pd.DataFrame, attacks: list[str] | None = None) -> list[tuple[str, float]]:
    """(attack, eps) pairs in ``attacks`` order (default: first appearance), budgets ascending."""
    rows = []
    for a in attacks or _ordered(df["attack"]):
        eps = df.loc[df.attack == a, "eps"]
        for e in sorted(set(eps.dropna())) + ([np.nan] if eps.isna().any() else []):
            rows.append((a, e))
    return rows


def _pick(df, attack, eps, defense=None, threat=None) -> pd.DataFrame:
    m = (df.attack == attack) & df.eps.apply(lambda v: _same_eps(v, eps))
    if defense is not None:
        m &= df.defense == defense
    if threat is not None:
        m &= df.threat_model == threat
    return df[m]


# ----------------------------------------------------------------------------------------------------
# A document written twice: HTML and Markdown


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def md_esc(text) -> str:
    """Plain text inside Markdown: HTML-escaped (renderers pass raw HTML through), pipes escaped."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


class Doc:
    def __init__(self, files_dir: Path):
        self.html: list[str] = []
        self.md: list[str] = []
        self.files_dir = files_dir
        self.figures = 0

    def heading(self, level: int, text: str, anchor: str | None = None):
        aid = f' id="{esc(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{aid}>{esc(text)}</h{level}>")
        self.md.append(f"{'#' * level} {md_esc(text)}\n")

    def para(self, text: str, cls: str | None = None):
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{esc(text)}</p>")
        self.md.append(("> " if cls == "note" else "") + md_esc(text) + "\n")

    def bullets(self, items: list[str]):
        self.html.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")
        self.md.append("\n".join(f"- {md_esc(i)}" for i in items) + "\n")

    def code(self, text: str):
        self.html.append(f"<pre><code>{esc(text)}</code></pre>")
        fence = "`" * max(3, max((len(r) for r in _runs_of(text, "`")), default=0) + 1)
        self.md.append(f"{fence}\n{text}\n{fence}\n")

    def table(self, header: list[str], rows: list[list], table_id: str | None = None, caption: str | None = None):
        """Cells are plain strings or ``Cell`` objects (HTML with attributes + Markdown text)."""
        tid = f' id="{esc(table_id)}"' if table_id else ""
        out = [f"<table{tid}>"]
        if caption:
            out.append(f"<caption style='caption-side:bottom;text-align:left;font-size:13px;color:#444'>"
                       f"{esc(caption)}</caption>")
        out.append("<thead><tr>" + "".join(f"<th>{_cell_html(h, 'th')}</th>" for h in header) + "</tr></thead><tbody>")
        for row in rows:
            out.append("<tr>" + "".join(_cell_td(c) for c in row) + "</tr>")
        out.append("</tbody></table>")
        self.html.append("".join(out))
        md = ["| " + " | ".join(_cell_md(h) for h in header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in rows]
        self.md.append("\n".join(md) + ("\n\n" + md_esc(caption) if caption else "") + "\n")

    def figure(self, name: str, png: bytes, caption: str, alt: str):
        self.figures += 1
        self.files_dir.mkdir(parents=True, exist_ok=True)
        (self.files_dir / name).write_bytes(png)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        self.html.append(f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>')
        self.md.append(f"![{md_esc(alt)}]({self.files_dir.name}/{name})\n\n*{md_esc(caption)}*\n")

    def raw(self, html_text: str, md_text: str):
        self.html.append(html_text)
        self.md.append(md_text)


def _runs_of(text: str, ch: str) -> list[str]:
    import re

    return re.findall(re.escape(ch) + "+", text)


@dataclass
class Cell:
    text: str  # Markdown / plain text
    html: str  # already escaped HTML
    attrs: dict = field(default_factory=dict)
    num: bool = True


def _cell_html(c, tag="td") -> str:
    return c.html if isinstance(c, Cell) else esc(c)


def _cell_td(c) -> str:
    if isinstance(c, Cell):
        attrs = "".join(f' {esc(k)}="{esc(v)}"' for k, v in c.attrs.items())
        cls = ' class="num"' if c.num else ""
        return f"<td{cls}{attrs}>{c.html}</td>"
    return f"<td>{esc(c)}</td>"


def _cell_md(c) -> str:
    return md_esc(c.text) if isinstance(c, Cell) else md_esc(c)


def f3(v) -> str:
    return "—" if v is None or pd.isna(v) else f"{v:.3f}"


def ci(lo, hi) -> str:
    return "" if pd.isna(lo) else f"[{lo:.2f}, {hi:.2f}]"


def signed(v) -> str:
    return "—" if pd.isna(v) else f"{v:+.3f}"


# ----------------------------------------------------------------------------------------------------
# The report


def build_report(run_dir: str | Path, examples: bool = True, n_examples: int = 3, device: str = "cpu",
                 on_progress=None, strict: bool = False) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ ``report_files/``) into ``run_dir``; return their paths.

    ``examples=False`` skips the example panels (the only part that loads the model and reruns an
    attack); they are also skipped, with the reason in the report, when that recomputation fails.
    Cells whose files are damaged are left out, one ``on_progress`` line each and a note in the
    report; ``strict=True`` refuses to write a report then."""
    say = on_progress or (lambda msg: None)
    run = load_run(run_dir)
    for label, finding in run.damaged.values():
        say(f"{run.root / finding.path}: {finding.reason} ({label}); left out of this report")
    if strict and run.damaged:
        raise HBBenchError(f"{run.root}: {len(run.damaged)} cell(s) left out (damaged or another run's) and --strict "
                           "is set: no report written; the sweep command that made the run recomputes them")
    files_dir = run.root / "report_files"
    if files_dir.is_dir():
        for old in files_dir.glob("*.png"):
            old.unlink()
    doc = Doc(files_dir)
    df = stats_table(run)
    colors = P.defense_colors(run.defenses)
    markers = P.attack_markers(run.attacks)
    costs = {d: clean_cost(run.records[df[df.defense == d].cell_id.iloc[0]]) for d in run.defenses}

    say("tables")
    _header(doc, run, df, colors)
    if run.damaged:
        doc.para("Left out of this report because their files are damaged (the sweep command that made the run "
                 "recomputes them): " + "; ".join(f"{label} — {f.path}: {f.reason}" for label, f in
                                                   run.damaged.values()) + ".", cls="note")
    _verdicts(doc, run, df, costs)
    _main_tables(doc, run, df, costs)
    say("plots")
    _curves(doc, run, df, colors, costs)
    _scatter(doc, run, df, colors, markers)
    _rank_shift(doc, run, df)
    if examples:
        say("example images (recomputing a few adversarial examples)")
        _examples(doc, run, df, n_examples, device)
    else:
        doc.heading(2, "Examples", "examples")
        doc.para("Example panels were skipped (--no-examples).")
    _cost_table(doc, run, df)
    _footer(doc, run)

    title = f"hbbench report — {run.manifest.get('spec', {}).get('model', '?')} on " \
            f"{run.manifest.get('spec', {}).get('data', '?')} — {run.root.name}"
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(doc.html) + "\n</body></html>\n")
    html_path, md_path = run.root / "report.html", run.root / "report.md"
    from hbbench.store import atomic_write_text

    atomic_write_text(html_path, page)
    atomic_write_text(md_path, "\n".join(doc.md))
    return html_path, md_path


def _header(doc: Doc, run: Run, df: pd.DataFrame, colors: dict):
    m, spec = run.manifest, run.manifest.get("spec", {})
    model = spec.get("model", df.model.iloc[0])
    data = spec.get("dataset", spec.get("data", df.dataset.iloc[0]))
    doc.heading(1, f"Robustness report: {model} on {data}")
    n = int(df.n.iloc[0])
    date = m.get("finished") or m.get("last_started") or m.get("started") or "unknown"
    doc.para(f"Run {run.root.name} — {n} images, seed {m.get('seed', spec.get('seed'))}, "
             f"{len(df)} cells ({', '.join(run.attacks)} × {', '.join(run.defenses)} × {', '.join(run.threats)}), "
             f"finished {date}. Report generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}.")
    if m.get("status") != "complete":
        doc.para(f"This run's status is '{m.get('status', 'unknown')}': it is not complete, and the report shows "
                 f"only the {len(df)} cells that finished.", cls="note")
    if n < 50:
        doc.para(f"With {n} images one image moves a top-1 accuracy by {1 / n:.3f}; read the 95% bootstrap "
                 "intervals before ranking defenses.", cls="note")
    rows = [["model", str(model)], ["dataset", str(data)], ["images (n)", str(n)],
            ["seed", str(m.get("seed", spec.get("seed")))], ["started", str(m.get("started", "?"))],
            ["finished", str(m.get("finished", "?"))], ["status", str(m.get("status", "?"))],
            ["run directory", str(run.root.resolve())], ["git revision", str(m.get("git_revision") or "unknown")],
            ["python / platform", f"{m.get('python', '?')} / {m.get('platform', '?')}"]]
    if spec.get("model_params"):
        rows.append(["model parameters", json.dumps(spec["model_params"], sort_keys=True)])
    if spec.get("data_params"):
        rows.append(["data parameters", json.dumps(spec["data_params"], sort_keys=True)])
    doc.table(["run", "value"], rows, table_id="run-info")
    versions = m.get("versions") or {}
    if versions:
        doc.para("Package versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items()) + ".")
    doc.para("Exact command:")
    doc.code(str(m.get("command", "unknown")))
    doc.para("Threat models in this run (every result below names its threat model):")
    doc.bullets([f"{t}: {THREAT_WORDS.get(t, 'see docs')}." for t in run.threats])
    swatches = " ".join(f'<span class="swatch" style="background:{c}"></span>{esc(d)}' for d, c in colors.items())
    doc.raw(f"<p>Defense colours, the same in every plot: {swatches}</p>",
            "Defense colours, the same in every plot: " + ", ".join(f"{md_esc(d)} {c}" for d, c in colors.items())
            + "\n")


def _gains(df: pd.DataFrame, defense: str, threat: str) -> list[tuple[str, float, float, float]]:
    """(setting, defended top-1, undefended top-1, gain) for each attack x budget under ``threat``."""
    out = []
    for attack, eps in _budget_rows(df):
        d = _pick(df, attack, eps, defense, threat)
        base = _pick(df, attack, eps, "none", threat)
        if d.empty or base.empty:
            continue
        setting = f"{attack} ε={P.eps_label(eps)}" if not pd.isna(eps) else attack
        out.append((setting, float(d.r_top1.iloc[0]), float(base.r_top1.iloc[0]),
                    float(d.r_top1.iloc[0] - base.r_top1.iloc[0])))
    return out


def verdict_texts(run: Run, df: pd.DataFrame, costs: dict) -> dict[str, list[str]]:
    """Generated sentences per threat model, from the numbers (also used by the tests)."""
    out: dict[str, list[str]] = {}
    n = int(df.n.iloc[0])
    defended = [d for d in run.defenses if d != "none"]
    mean_gain = {(d, t): np.mean([g[3] for g in _gains(df, d, t)]) if _gains(df, d, t) else np.nan
                 for d in defended for t in run.threats}
    for t in run.threats:
        lines = []
        for d in defended:
            gains = _gains(df, d, t)
            if not gains:
                continue
            worst = min(gains, key=lambda g: g[1])
            mean_d, mean_b = np.mean([g[1] for g in gains]), np.mean([g[2] for g in gains])
            c = costs[d]
            text = (f"{d}: adversarial top-1 {mean_d:.2f} on average over {len(gains)} attack setting(s) vs "
                    f"{mean_b:.2f} without a defense ({mean_d - mean_b:+.2f}); worst {worst[1]:.2f} "
                    f"({worst[0]}). Clean top-1 {c['clean']:.2f} → {c['defended']:.2f} with it.")
            if t != "oblivious" and "oblivious" in run.threats:
                obl, here = mean_gain[(d, "oblivious")], mean_gain[(d, t)]
                if obl >= HOLD_MIN_GAIN and here < max(HOLD_MIN_GAIN, 0.5 * obl):
                    text += (f" It only looks strong obliviously: its gain falls from {obl:+.2f} (oblivious) to "
                             f"{here:+.2f} once the attack sees it ({t}).")
                elif here >= HOLD_MIN_GAIN:
                    text += f" It holds under {t}: gain {here:+.2f} here vs {obl:+.2f} oblivious."
                else:
                    text += f" It does not help under either threat model (gain {obl:+.2f} oblivious, {here:+.2f} {t})."
            elif t == "oblivious":
                text += (" Helps obliviously." if mean_gain[(d, t)] >= HOLD_MIN_GAIN
                         else f" Adds less than {HOLD_MIN_GAIN:.2f} top-1 even obliviously.")
            lines.append(text)
        if not defended:
            lines.append("Only the undefended model is in this run.")
        if n < 50 and defended:
            lines.append(f"(n = {n}: each image is {1 / n:.2f} of top-1, and a 95% interval around a top-1 near 0.5 "
                         f"spans about ±{1 / np.sqrt(n):.2f}; see the intervals in the tables before trusting a "
                         "difference.)")
        out[t] = lines
    return out


def _verdicts(doc: Doc, run: Run, df: pd.DataFrame, costs: dict):
    doc.heading(2, "What holds and what only looks strong obliviously", "verdicts")
    doc.para(f"Generated from this run's numbers: 'gain' is defended adversarial top-1 minus the undefended "
             f"model's adversarial top-1 on the same attack setting; a defense 'holds' when it keeps a gain of "
             f"at least {HOLD_MIN_GAIN:.2f} (and half its oblivious gain) under an attack that sees it.")
    for t, lines in verdict_texts(run, df, costs).items():
        doc.heading(3, f"Threat model: {t}")
        for line in lines:
            doc.para(line, cls="verdict")


def _main_tables(doc: Doc, run: Run, df: pd.DataFrame, costs: dict):
    doc.heading(2, "Defended accuracy by attack and defense", "main-table")
    doc.para("Each cell: defended adversarial top-1 (the defense applied to the adversarial input) and the "
             "ranking NDCG against the clean output (the paper's measure), with 95% percentile-bootstrap "
             "intervals over images (1000 resamples, from the per-sample records). 'none' is the undefended model.")
    for t in run.threats:
        doc.heading(3, f"Threat model: {t}")
        sub = df[df.threat_model == t]
        header = ["attack", "ε"] + [f"{d}" for d in run.defenses]
        rows = []
        for attack, eps in _budget_rows(sub, [a for a in run.attacks if a in set(sub.attack)]):
            row = [attack, P.eps_label(eps)]
            for d in run.defenses:
                r = _pick(sub, attack, eps, d)
                if r.empty:
                    row.append("—")
                    continue
                r = r.iloc[0]
                html_text = (f"top-1 <b>{f3(r.r_top1)}</b> <span class='ci'>{ci(r.r_top1_lo, r.r_top1_hi)}</span>"
                             f"<span class='sub'>NDCG {f3(r.r_ndcg)} <span class='ci'>{ci(r.r_ndcg_lo, r.r_ndcg_hi)}</span>"
                             f"</span>")
                md_text = f"top-1 {f3(r.r_top1)} {ci(r.r_top1_lo, r.r_top1_hi)}; NDCG {f3(r.r_ndcg)} {ci(r.r_ndcg_lo, r.r_ndcg_hi)}"
                row.append(Cell(md_text, html_text, {"data-cell-id": r.cell_id, "data-top1": repr(float(r.r_top1)),
                                                     "data-ndcg": repr(float(r.r_ndcg)), "data-threat": t,
                                                     "data-defense": d}))
            rows.append(row)
        doc.table(header, rows, table_id=f"main-{t}",
                  caption=f"Threat model {t}: {THREAT_WORDS.get(t, '')}.")
    doc.heading(3, "Clean-accuracy cost of each defense (no attack)")
    rows = []
    for d in run.defenses:
        c = costs[d]
        rows.append([d, Cell(f3(c["clean"]), esc(f3(c["clean"]))),
                     Cell(f"{f3(c['defended'])} {ci(c['defended_lo'], c['defended_hi'])}",
                          f"<b>{f3(c['defended'])}</b> <span class='ci'>{ci(c['defended_lo'], c['defended_hi'])}</span>",
                          {"data-defense": d, "data-defended-clean-top1": repr(float(c["defended"]))}),
                     Cell(f"{signed(c['delta'])} {ci(c['delta_lo'], c['delta_hi'])}",
                          f"{signed(c['delta'])} <span class='ci'>{ci(c['delta_lo'], c['delta_hi'])}</span>"),
                     Cell(f3(c["ndcg"]), esc(f3(c["ndcg"])))])
    doc.table(["defense", "clean top-1, no defense", "clean top-1 with defense [95% CI]",
               "change [95% CI, paired]", "NDCG of defended clean vs clean"], rows, table_id="clean-cost",
              caption="Applies to every threat model: no attack is involved.")


def _curves(doc: Doc, run: Run, df: pd.DataFrame, colors: dict, costs: dict):
    budgeted = [a for a in run.attacks if df[df.attack == a].eps.notna().any()]
    doc.heading(2, "Robustness curves", "curves")
    if not budgeted:
        doc.para("No attack in this run takes a budget ε, so there are no curves; see the tables.")
        return
    curve = df
    clean_top1 = {d: c["defended"] for d, c in costs.items()}
    clean_ndcg = {d: c["ndcg"] for d, c in costs.items()}
    fig = P.robustness_curves(curve, "r_top1", "defended top-1 accuracy (fraction)", budgeted, run.threats, colors,
                              clean_top1)
    doc.figure("curves_top1.png", P.png_bytes(fig),
               "Defended top-1 accuracy vs attack budget, one line per defense (shaded: 95% bootstrap interval), "
               "one column per threat model. The dashed black line is the undefended model. Compare columns: a "
               "defense whose line drops from the oblivious to the BPDA/adaptive column only looked strong.",
               "defended top-1 versus budget per threat model")
    fig = P.robustness_curves(curve, "r_ndcg", "defended NDCG vs clean ranking (0–1)", budgeted, run.threats, colors,
                              clean_ndcg)
    doc.figure("curves_ndcg.png", P.png_bytes(fig),
               "Ranking NDCG of the defended output against the clean output vs attack budget (1 = the clean "
               "ranking is fully kept); partial damage and recovery that top-1 cannot show.",
               "defended NDCG versus budget per threat model")


def _largest_budget(df: pd.DataFrame) -> pd.DataFrame:
    keep = []
    for a in _ordered(df.attack):
        sub = df[df.attack == a]
        keep.append(sub if sub.eps.isna().all() else sub[sub.eps == sub.eps.max()])
    return pd.concat(keep)


def _scatter(doc: Doc, run: Run, df: pd.DataFrame, colors: dict, markers: dict):
    doc.heading(2, "Clean accuracy vs robustness", "scatter")
    pts = _largest_budget(df).copy()
    pts["defended_adv_top1"] = pts["r_top1"]
    budgets = ", ".join(f"{a} ε={P.eps_label(e)}" for a, e in _budget_rows(pts))
    fig = P.clean_vs_robust(pts, run.threats, colors, markers)
    doc.figure("clean_vs_robust.png", P.png_bytes(fig),
               f"One point per defense per attack ({budgets}); x = clean top-1 with the defense, y = adversarial "
               "top-1 with the defense, one panel per threat model. Up and right is better; the dashed line joins "
               "each attack's Pareto front; the dotted diagonal is 'no loss under attack'.",
               "clean versus adversarial top-1 per defense and attack")


def _focus(df: pd.DataFrame) -> tuple[str, float]:
    """The attack setting the rank-shift view and the examples show: the strongest against the undefended
    model (lowest adversarial top-1), larger budget first on ties."""
    base = df[(df.defense == "none")] if (df.defense == "none").any() else df
    base = base.assign(_e=base.eps.fillna(-1)).sort_values(["adv_top1", "_e"], ascending=[True, False], kind="stable")
    return base.attack.iloc[0], base.eps.iloc[0]


def _rank_shift(doc: Doc, run: Run, df: pd.DataFrame):
    doc.heading(2, "Where the true class goes", "rank-shift")
    attack, eps = _focus(df)
    setting = f"{attack}" + ("" if pd.isna(eps) else f" ε={P.eps_label(eps)}")
    rows = {}
    for t in run.threats:
        items = []
        for d in run.defenses:
            r = _pick(df, attack, eps, d, t)
            if r.empty:
                continue
            rec = run.records[r.cell_id.iloc[0]]
            if d == "none":
                items += [("none · clean", rec.clean_true_rank.to_numpy()),
                          ("none · adversarial", rec.adv_true_rank.to_numpy())]
            else:
                items.append((f"{d} · defended clean", rec.def_clean_true_rank.to_numpy()))
                if t != "oblivious":  # oblivious: the same adversarial images as 'none · adversarial'
                    items.append((f"{d} · adv., undefended model", rec.adv_true_rank.to_numpy()))
                items.append((f"{d} · adv., defended", rec.def_adv_true_rank.to_numpy()))
        if items:
            rows[t] = items
    fig = P.rank_shift(rows, setting)
    doc.figure("rank_shift.png", P.png_bytes(fig),
               f"Rank of the true class in each output ({setting}, the attack setting that hurts the undefended "
               "model most), one panel per threat model; MRR = mean reciprocal rank of the true class. Under "
               "oblivious all defenses see the same adversarial images; under BPDA each defense is attacked "
               "separately, so its 'adv., undefended model' row shows the examples crafted against it.",
               "rank of the true class in clean, adversarial and defended outputs")


def _class_namer(num_classes: int):
    if num_classes == 1000:
        try:
            from timm.data import ImageNetInfo

            info = ImageNetInfo()
            return lambda i: info.index_to_description(int(i)).split(",")[0]
        except Exception:  # noqa: BLE001 - names are a nicety
            pass
    return lambda i: f"class {int(i)}"


def _examples(doc: Doc, run: Run, df: pd.DataFrame, n_examples: int, device: str):
    doc.heading(2, "Examples", "examples")
    try:
        fig, caption = _example_figure(run, df, n_examples, device)
    except Exception as exc:  # noqa: BLE001 - the report must not die for its illustration
        doc.para(f"Example panels could not be recomputed ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                 "the numbers above do not depend on them.", cls="note")
        return
    doc.figure("examples.png", P.png_bytes(fig, dpi=90, colors=256), caption, "example images: clean, adversarial, defended")
    if any(d.split("[")[0] == "heatblur" for d in run.defenses):
        _heatblur_explain(doc, run, df)


def _example_figure(run: Run, df: pd.DataFrame, n_examples: int, device: str):
    from hbbench.attacks import make_attack
    from hbbench.classifier import make_classifier, predict_probs
    from hbbench.datasets import load_dataset
    from hbbench.defenses import make_defense
    from hbbench.models import load_model
    from hbbench.runner import apply_defense, seed_everything
    from hbbench.spec import SweepSpec

    attack, eps = _focus(df)
    spec = SweepSpec.from_dict(dict(run.manifest["spec"]))
    cells = {c.id: c for c in spec.cells()}
    obl = _pick(df, attack, eps, threat="oblivious") if "oblivious" in run.threats else _pick(df, attack, eps)
    threat = obl.threat_model.iloc[0]
    obl = obl[obl.threat_model == threat]
    base_row = obl[obl.defense == "none"] if (obl.defense == "none").any() else obl.iloc[:1]
    base_cell = cells[base_row.cell_id.iloc[0]]
    rec = run.records[base_cell.id]
    # images the clean model gets right and the attack flips first, then any
    right = rec.clean_pred == rec.label
    flipped = right & (rec.adv_pred != rec.label)
    order = list(rec.index[flipped]) + list(rec.index[right & ~flipped]) + list(rec.index[~right])
    chosen = [int(rec.loc[i, "sample"]) for i in order[:n_examples]]

    model = load_model(base_cell.model, **dict(base_cell.model_params))
    ds = load_dataset(base_cell.data, n=base_cell.n, **dict(base_cell.data_params))
    clf = make_classifier(model, device=device)
    names = _class_namer(int(clf.nb_classes))
    # Attack the shard the run attacked (same images, seed and batch size), so random starts match,
    # when it is small; otherwise only the chosen images (then PGD's random start can differ).
    size = getattr(spec, "shard_size", None) or len(ds)
    shard = chosen[0] // size
    start, stop = shard * size, min(shard * size + size, len(ds))
    chosen = [s for s in chosen if start <= s < stop]
    exact = stop - start <= 32
    rows_idx = list(range(start, stop)) if exact else chosen
    x_all = ds.images(rows_idx) if hasattr(ds, "images") else ds.x[rows_idx]
    y_all = ds.y[rows_idx]
    params = dict(base_cell.attack_params)
    if base_cell.eps is not None:
        params["eps"] = base_cell.eps
    params.setdefault("batch_size", spec.batch_size)
    attacked = clf
    if base_cell.attack_target != ("undefended",):  # no oblivious cell: attack the defended model as the run did
        from hbbench.classifier import with_defenses
        from hbbench.defenses import attack_defenses

        pre, _ = attack_defenses(make_defense(base_cell.defense_name, clf, **dict(base_cell.defense_params)),
                                 base_cell.threat_model, "cpu")
        attacked = with_defenses(clf, pre)
    seed_parts = (shard,) if hasattr(spec, "shard_size") else ()
    seed_everything(base_cell.seed, base_cell.attack_key, *seed_parts)
    x_adv_all = make_attack(base_cell.attack_name, attacked, **params).generate(x_all, y=y_all).astype(np.float32)
    idx = [rows_idx.index(s) for s in chosen]
    x, x_adv, y = x_all[idx], x_adv_all[idx], y_all[idx]

    def probs(arr):
        return predict_probs(clf, arr, spec.batch_size)

    def panel(img, p, label):
        top = np.argsort(-p)[:3]
        ok = bool(top[0] == label)
        lines = [f"{'✓' if k == 0 and ok else ('✗' if k == 0 else ' ')} {names(c)[:20]} {p[c]:.2f}"
                 for k, c in enumerate(top)]
        return {"img": img, "lines": lines, "ok": ok}

    p_clean, p_adv = probs(x), probs(x_adv)
    eps_txt = "" if base_cell.eps is None else f" ε={P.eps_label(base_cell.eps)}"
    adv_col = f"adversarial ({attack}{eps_txt})"
    pert_col = "perturbation δ (stretched)"
    columns = ["clean", adv_col, pert_col]
    defended = {}
    for d in [d for d in run.defenses if d != "none"]:
        r = obl[obl.defense == d]
        if r.empty:
            continue
        cell = cells[r.cell_id.iloc[0]]
        defense = make_defense(cell.defense_name, clf, **dict(cell.defense_params))
        seed_everything(cell.seed, cell.id, "defense", *seed_parts)
        xd = apply_defense(defense, x_adv_all, spec.batch_size)[idx]
        defended[d] = (xd, probs(xd))
        columns.append(f"{d} on adversarial")
    rows, agree = [], 0
    for k, s in enumerate(chosen):
        label = int(y[k])
        delta = x_adv[k] - x[k]
        scale = float(np.abs(delta).max()) or 1.0
        row = {"title": f"#{s}: {names(label)[:22]}",
               "clean": panel(x[k], p_clean[k], label), adv_col: panel(x_adv[k], p_adv[k], label),
               pert_col: {"img": 0.5 + delta / (2 * scale),
                          "lines": [f"max |δ| = {scale * 255:.2g}/255", "gray = 0; stretched to ±max"],
                          "ok": None}}
        for d, (xd, pd_) in defended.items():
            row[f"{d} on adversarial"] = panel(xd[k], pd_[k], label)
        rows.append(row)
        agree += int(np.argmax(p_adv[k]) == int(rec.loc[rec["sample"] == s, "adv_pred"].iloc[0]))
    fig = P.example_panels(rows, columns)
    how = ("their whole shard attacked again with the run's seed and batch size" if exact else
           "only these images attacked again (random starts can differ from the run)")
    caption = (f"Threat model: {threat}. {len(chosen)} images (clean model right, attack succeeds first) under "
               f"{attack}{eps_txt}, the attack setting that hurts the undefended model most; each panel lists the "
               f"top-3 predictions with probabilities (✓/green frame: top-1 correct, ✗/red: wrong). Recomputed for "
               f"this report ({how}, on {device}); the adversarial top-1 matches the run's records for {agree} of "
               f"{len(chosen)} images.")
    return fig, caption


def _heatblur_explain(doc: Doc, run: Run, df: pd.DataFrame):
    spec = run.manifest.get("spec", {})
    try:
        from hbbench import explain as E
    except ImportError:
        doc.para("The Heat-and-Blur explanation figure needs hbbench.explain, which this installation lacks.")
        return
    label = next(d for d in run.defenses if d.split("[")[0] == "heatblur")
    if spec.get("model_params") or spec.get("data_params"):
        doc.para("The Heat-and-Blur explanation figure is drawn only for runs with registry defaults "
                 "(this run sets model or data parameters).")
        return
    try:
        from hbbench.spec import parse_item

        _, params = parse_item(label)
        attack, eps = _focus(df)
        out = doc.files_dir / "heatblur_explain.png"
        doc.files_dir.mkdir(parents=True, exist_ok=True)
        fig = E.explain(0, dataset=spec["data"], model=spec["model"], out=out,
                        eps=float(eps) if not pd.isna(eps) else 4 / 255, seed=int(spec.get("seed", 0)), **params)
        import matplotlib.pyplot as plt

        plt.close(fig)
        png = out.read_bytes()
        out.unlink()
    except Exception as exc:  # noqa: BLE001
        doc.para(f"The Heat-and-Blur explanation figure could not be drawn ({type(exc).__name__}: {exc}).",
                 cls="note")
        return
    doc.figure("heatblur_explain.png", png,
               f"How {label} defends image #0: relevance heatmaps of the top predicted classes, the combined mask, "
               "the blurred copy and the defended input, clean (top row) and under oblivious PGD (bottom row); "
               "drawn by hbbench.explain.", "Heat-and-Blur explanation for one image")


def _cost_table(doc: Doc, run: Run, df: pd.DataFrame):
    doc.heading(2, "Cost", "cost")
    n = df.n.astype(float)
    target = np.where((df.threat_model == "oblivious") | (df.defense == "none"), "undefended model",
                      df.defense + " (" + df.threat_model + ")")
    runs = df.assign(target=target, per_image=df.attack_seconds / n)
    rows, seen = [], set()
    for r in runs.itertuples():
        key = (r.attack, -1 if pd.isna(r.eps) else r.eps, r.target)
        if key in seen:
            continue
        seen.add(key)
        rows.append([r.attack, P.eps_label(r.eps), r.target, Cell(f"{r.per_image:.3f}", f"{r.per_image:.3f}"),
                     Cell(f"{r.attack_seconds:.2f}", f"{r.attack_seconds:.2f}")])
    doc.table(["attack", "ε", "crafted against (threat model)", "attack s / image", "attack s total"], rows,
              table_id="attack-cost", caption="One row per attack run; cells that share adversarial examples "
              "(every oblivious cell, and the undefended model under any threat model) share one run.")
    rows = []
    for d in run.defenses:
        sub = df[df.defense == d]
        per = sub.defense_seconds / (2 * sub.n.astype(float))
        rows.append([d, Cell(f"{per.median():.4f}", f"{per.median():.4f}"),
                     Cell(f"{per.min():.4f}–{per.max():.4f}", f"{per.min():.4f}–{per.max():.4f}"), str(len(sub))])
    doc.table(["defense", "defense s / image (median)", "range over cells", "cells"], rows, table_id="defense-cost",
              caption="Time to apply the defense, per image, over clean and adversarial inputs (2n images per cell); "
                      "the model's forward pass is not included. Seconds on the machine that ran the sweep.")


def _footer(doc: Doc, run: Run):
    doc.heading(2, "About these numbers", "about")
    doc.bullets([
        "Top-1: fraction of images whose highest-scoring class is the true label. Defended adversarial top-1 "
        "applies the defense to the adversarial image before classifying it.",
        "NDCG: ranking agreement of the defended adversarial output with the clean output, relevance = clean "
        "probabilities (Brama & Grinshpoun, arXiv 2003.07573); MRR: mean of 1 / rank of the true class "
        "(arXiv 2201.05071).",
        "Intervals: 95% percentile bootstrap over images (1000 resamples, seed 0), recomputed here from the "
        "per-sample records in cells/*.parquet; they match summary.csv's *_ci_low/high columns.",
        f"Sources: {run.root.name}/summary.csv, manifest.json and cells/ (cell ids in the HTML table cells' "
        "data-cell-id attributes).",
    ])
