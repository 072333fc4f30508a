"""``hbbench export RUN --out FILE``: a run's stored adversarial examples in one portable file.

It reads only the run directory (manifest, summary.csv, the cells' records and examples files), each
exported cell checked against its seal first, and writes one compressed NumPy ``.npz`` (lossless):
``np.load(FILE)`` reads it without hbbench, torch or pickle (``torch.from_numpy`` turns any array into
a tensor).

One row per exported image (all of a cell's images follow each other, cells in summary.csv order):

    cell         int    index into the per-cell arrays below
    sample       int    the image's index in the run's data (the dataset named in the manifest's spec)
    image_id     str    its id there
    label        int    its label
    x_adv        float32 N x C x H x W in [0, 1], the adversarial input as crafted (what the defense received)
    stored_pred  int    the defended model's top-1 on it, as the run recorded it (records: def_adv_pred)
    stored_margin float the run's top-1 minus top-2 log-probability (the logit gap; near 0: a decision boundary)

Per cell (``cell_`` prefix): ``cell_id``, ``model``, ``dataset``, ``attack``, ``eps`` (NaN when the
attack takes none), ``norm`` (``inf``, ``2``, ...), ``threat_model``, ``defense``, ``n`` (the cell's
images), ``top1`` (summary.csv's ``defended_adv_top1`` over all n), ``randomized`` (the defense draws
at random). And ``manifest``: the run's manifest as JSON (spec, seed, command, versions, git revision,
plugins, model weights); ``format``: FORMAT.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from hbbench import examples_store
from hbbench.errors import HBBenchError
from hbbench.integrity import OK, inspect_cell
from hbbench.parsing import parse_budget
from hbbench.rundir import RunDir, atomic_write_bytes

FORMAT = "hbbench-examples/1"
WORST_CASE = "worst_case"  # summary.csv's worst-case rows (hbbench.checks.table): no examples of their own
FILTER_KEYS = ("cell_id", "model", "attack", "eps", "norm", "defense", "threat_model")
CELL_FIELDS = ("cell_id", "model", "dataset", "attack", "eps", "norm", "threat_model", "defense", "n", "top1",
               "randomized")


def export(run_dir, out, cells: str | None = None) -> dict:
    """Write ``out`` (.npz) from the run in ``run_dir``; ``cells`` filters them
    (``key=value,...`` over FILTER_KEYS, all must match). Returns {"cells": k, "images": m, "skipped": [...]},
    the cells left out because they stored no examples named in ``skipped``."""
    out = Path(out)
    if out.suffix != ".npz":
        raise HBBenchError(f"--out {out}: give a .npz file name (NumPy's format: it loads without hbbench, torch "
                           "or pickle)")
    run = RunDir.open(run_dir)
    manifest = run.require_manifest()
    summary = run.read_summary()
    summary = summary[summary.attack != WORST_CASE] if not summary.empty else summary
    summary = select(summary, cells)
    per_cell, rows, skipped = {k: [] for k in CELL_FIELDS}, [], []
    for row in summary.itertuples(index=False):
        finding = inspect_cell(run.root, row.cell_id, manifest.get("spec_id"))
        if finding.status != OK:
            raise HBBenchError(f"{run.root / finding.path}: {finding.reason}; nothing exported (`hbbench verify "
                               f"{run.root}` names every damaged file)")
        if not run.cell_examples(row.cell_id).is_file():
            skipped.append(f"{row.attack} / {row.defense} / {row.threat_model}")
            continue
        rows.append(_cell_rows(run, row, len(per_cell["cell_id"])))
        for k, v in _cell_fields(row).items():
            per_cell[k].append(v)
    if not rows:
        why = ("its cells stored no adversarial examples (the run was made with --save-examples 0); run the sweep "
               "again with --save-examples N or all under another --run name") if not summary.empty else \
            f"no cell of {run.root} matches --cells {cells!r}"
        raise HBBenchError(f"nothing to export: {why}")
    arrays = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    arrays.update({f"cell_{k}": np.asarray(v) for k, v in per_cell.items()})
    arrays["manifest"] = np.asarray(json.dumps(manifest, sort_keys=True, default=str))
    arrays["format"] = np.asarray(FORMAT)
    atomic_write_bytes(out, _npz_bytes(arrays))
    return {"cells": len(rows), "images": len(arrays["sample"]), "skipped": skipped}


def select(summary: pd.DataFrame, text: str | None) -> pd.DataFrame:
    """The rows of summary.csv that ``key=value,...`` names (every pair must match)."""
    if not text:
        return summary
    keep = np.ones(len(summary), bool)
    for pair in text.split(","):
        key, sep, value = (p.strip() for p in pair.partition("="))
        if not sep or key not in FILTER_KEYS:
            raise HBBenchError(f"--cells {text!r}: give key=value pairs separated by commas, keys among "
                               f"{', '.join(FILTER_KEYS)} (e.g. 'defense=jpeg,threat_model=bpda')")
        if key == "eps":
            eps = parse_budget(value)
            keep &= np.isclose(summary.eps.astype(float).to_numpy(), eps, rtol=1e-9, atol=1e-12)
        else:
            keep &= (summary[key].astype(str) == value).to_numpy()
    return summary[keep]


def _cell_rows(run: RunDir, row, index: int) -> dict[str, np.ndarray]:
    examples = examples_store.read(run.cell_examples(row.cell_id))
    records = run.read_records(row.cell_id).set_index("sample")
    rec = records.loc[examples["sample"]]
    top2 = np.stack([np.asarray(p, np.float64)[:2] for p in rec["def_adv_top5_prob"]])
    return {"cell": np.full(len(rec), index, np.int64), "sample": examples["sample"].astype(np.int64),
            "image_id": np.asarray([str(i) for i in rec["sample_id"]], dtype=str), "label": rec["label"].to_numpy(np.int64),
            "x_adv": examples["x_adv"], "stored_pred": rec["def_adv_pred"].to_numpy(np.int64),
            "stored_margin": np.log(top2[:, 0]) - np.log(np.maximum(top2[:, 1], 1e-45))}


def _cell_fields(row) -> dict:
    eps = float(row.eps) if not pd.isna(row.eps) else np.nan
    randomized = getattr(row, "defense_randomized", False)
    return {"cell_id": str(row.cell_id), "model": str(row.model), "dataset": str(row.dataset),
            "attack": str(row.attack), "eps": eps, "norm": str(row.norm), "threat_model": str(row.threat_model),
            "defense": str(row.defense), "n": int(row.n), "top1": float(row.defended_adv_top1),
            "randomized": bool(randomized) if not pd.isna(randomized) else False}


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def load(path) -> dict[str, np.ndarray]:
    """An export as NumPy arrays; a file that is not an hbbench export is named."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, AttributeError) as exc:
        raise HBBenchError(f"cannot read {path} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                           "give a file `hbbench export` wrote") from None
    if str(arrays.get("format", "")) != FORMAT:
        raise HBBenchError(f"{path} is not an hbbench export (format {str(arrays.get('format', 'missing'))!r}, "
                           f"expected {FORMAT!r})")
    return arrays
