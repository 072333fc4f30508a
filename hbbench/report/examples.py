"""Example panels (a few images clean, adversarial and defended, with their top-3 predictions) and the
Heat-and-Blur explanation figure. Adversarial images are not stored, so the panels craft them again
through the runner's ``craft`` and ``defend`` (the run's code, parameters and seeds); this module
imports no attack itself."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import hbbench.report.plots as P
from hbbench.threats import threat_order
from hbbench.report.data import Run, focus, pick, setting_label
from hbbench.report.document import Doc
from hbbench.spec import parse_item

EXACT_SHARD_MAX = 32  # a shard this small is attacked again whole, so the run's random starts are reproduced


def examples(doc: Doc, run: Run, n_examples: int, device: str):
    doc.heading(2, "Examples", "examples")
    try:
        fig, caption = example_figure(run, n_examples, device)
    except Exception as exc:  # noqa: BLE001 - the report must not die for its illustration
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        doc.para(f"Example panels could not be recomputed ({type(exc).__name__}: {reason}); "
                 "the numbers above do not depend on them.", cls="note")
        return
    doc.figure("examples.png", P.png_bytes(fig, dpi=90, colors=256), caption,
               "example images: clean, adversarial, defended")
    heatblur = [d for d in run.defenses if parse_item(d)[0] == "heatblur"]
    if heatblur:
        heatblur_explain(doc, run, heatblur[0], device)


def _class_namer(num_classes: int):
    if num_classes == 1000:
        try:
            from timm.data import ImageNetInfo

            info = ImageNetInfo()
            return lambda i: info.index_to_description(int(i)).split(",")[0]
        except Exception:  # noqa: BLE001 - names are a nicety
            pass
    return lambda i: f"class {int(i)}"


def _chosen_samples(rec: pd.DataFrame, n: int) -> list[int]:
    """Images the clean model gets right and the attack flips first, then the others it gets right, then any."""
    right = rec.clean_pred == rec.label
    flipped = right & (rec.adv_pred != rec.label)
    order = list(rec.index[flipped]) + list(rec.index[right & ~flipped]) + list(rec.index[~right])
    return [int(rec.loc[i, "sample"]) for i in order[:n]]


def _grid(run: Run):
    """The run's spec and its cells by id: a cell names the model (and its parameters) it ran on, which
    in a model grid differs from cell to cell."""
    from hbbench.grid import resolve_manifest

    grid = resolve_manifest(run.manifest, str(run.root / "manifest.json"))  # its plugins loaded first
    return grid.spec, {c.id: c for c in grid.cells}


def example_figure(run: Run, n_examples: int, device: str):
    from hbbench.attacks.early_stop import keeps_best_iterate
    from hbbench.runner import craft, defend, get_context, make_cell_defense

    attack, eps = focus(run.summary)
    spec, cells = _grid(run)
    setting = pick(run.summary, attack, eps)
    threat = threat_order(setting.threat_model)[0]  # oblivious when the run has it
    setting = setting[setting.threat_model == threat]
    base_row = setting[setting.defense == "none"] if (setting.defense == "none").any() else setting.iloc[:1]
    base_cell = cells[base_row.cell_id.iloc[0]]
    rec = run.records[base_cell.id]
    chosen = _chosen_samples(rec, n_examples)

    ctx = get_context(base_cell, spec.batch_size, device)
    names = _class_namer(int(ctx.classifier.nb_classes))
    # Attack the shard the run attacked (same images, seed and batch size), so random starts match,
    # when it is small; otherwise only the chosen images (then PGD's random start can differ).
    size = spec.shard_size or len(ctx.dataset)
    shard = chosen[0] // size
    start, stop = shard * size, min(shard * size + size, len(ctx.dataset))
    chosen = [s for s in chosen if start <= s < stop]
    exact = stop - start <= EXACT_SHARD_MAX
    rows_idx = list(range(start, stop)) if exact else chosen
    idx = [rows_idx.index(s) for s in chosen]
    x_all, y_all = ctx.dataset.images(rows_idx), ctx.dataset.y[rows_idx]
    def run_of(cell):  # the attack run's best iterate, as the runner planned it
        return keeps_best_iterate([c for c in cells.values() if c.attack_run == cell.attack_run])
    x_adv_all = craft(base_cell, ctx, x_all, y_all, shard, best_iterate=run_of(base_cell))
    # predicted over the whole attacked batch, as the run predicted them
    x, x_adv, y = x_all[idx], x_adv_all[idx], y_all[idx]
    p_clean, p_adv = ctx.predict(x_all)[idx], ctx.predict(x_adv_all)[idx]

    adv_col = f"adversarial ({setting_label(attack, eps)})"
    pert_col = "perturbation δ (stretched)"
    defended = {}
    for d in run.defenses:
        r = setting[setting.defense == d]
        if d == "none" or r.empty:
            continue
        cell = cells[r.cell_id.iloc[0]]
        # a defense the attack sees has adversarial examples of its own, crafted as the run crafted them
        x_adv_cell = craft(cell, ctx, x_all, y_all, shard, best_iterate=run_of(cell)) if cell.crafts_against_defense else x_adv_all
        # the clean images go through too, first: a random defense then draws the run's noise
        _, x_def = defend(cell, make_cell_defense(cell, ctx.classifier), shard, ctx.batch_size, x_all, x_adv_cell)
        column = f"{d} on adversarial" + (" crafted against it" if cell.crafts_against_defense else "")
        defended[column] = (x_def[idx], ctx.predict(x_def)[idx])

    def panel(img, p, label):
        top = np.argsort(-p)[:3]
        ok = bool(top[0] == label)
        lines = [f"{'✓' if k == 0 and ok else ('✗' if k == 0 else ' ')} {names(c)[:20]} {p[c]:.2f}"
                 for k, c in enumerate(top)]
        return {"img": img, "lines": lines, "ok": ok}

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
        for column, (xd, pd_) in defended.items():
            row[column] = panel(xd[k], pd_[k], label)
        rows.append(row)
        agree += int(np.argmax(p_adv[k]) == int(rec.loc[rec["sample"] == s, "adv_pred"].iloc[0]))
    fig = P.example_panels(rows, ["clean", adv_col, pert_col] + list(defended))
    how = ("their whole shard attacked again with the run's seed and batch size" if exact else
           "only these images attacked again (random starts can differ from the run)")
    caption = (f"Threat model: {threat}. {len(chosen)} images (clean model right, attack succeeds first) under "
               f"{setting_label(attack, eps)}, the attack setting that hurts the undefended model most; each panel "
               f"lists the top-3 predictions with probabilities (✓/green frame: top-1 correct, ✗/red: wrong). "
               f"Recomputed for this report ({how}, on {device}); the adversarial top-1 matches the run's records "
               f"for {agree} of {len(chosen)} images.")
    return fig, caption


def heatblur_explain(doc: Doc, run: Run, label: str, device: str):
    """hbbench.explain's figure for image #0 with the run's Heat-and-Blur parameters ``label``, on the
    model of the run's ``label`` cells."""
    try:
        cell = _grid(run)[1][run.summary.cell_id[run.summary.defense == label].iloc[0]]
        if cell.model_params or cell.dataset_params:
            doc.para("The Heat-and-Blur explanation figure is drawn only for runs with registry defaults "
                     "(this run sets model or dataset parameters).")
            return
        import matplotlib.pyplot as plt

        from hbbench.explain import explain

        _, params = parse_item(label)
        _, eps = focus(run.summary)
        with tempfile.TemporaryDirectory() as tmp:  # doc.figure writes the report's copy, under its own name
            out = Path(tmp) / "heatblur_explain.png"
            fig = explain(0, dataset=cell.dataset, model=cell.model, out=out,
                          eps=4 / 255 if pd.isna(eps) else float(eps), device=device, seed=cell.seed, **params)
            plt.close(fig)
            png = out.read_bytes()
    except Exception as exc:  # noqa: BLE001 - the report must not die for its illustration
        doc.para(f"The Heat-and-Blur explanation figure could not be drawn ({type(exc).__name__}: {exc}).",
                 cls="note")
        return
    doc.figure("heatblur_explain.png", png,
               f"How {label} defends image #0: relevance heatmaps of the top predicted classes, the combined mask, "
               "the blurred copy and the defended input, clean (top row) and under oblivious PGD (bottom row); "
               "drawn by hbbench.explain.", "Heat-and-Blur explanation for one image")
