"""Example panels (a few images clean, adversarial and defended, with their top-3 predictions) and the
Heat-and-Blur explanation figure, drawn from what the sweep stored: its adversarial examples
(cells/<id>.examples.npz, hbbench.examples_store) and its per-sample records. Nothing is crafted
again; the clean images are read from the run's dataset. Only the Heat-and-Blur figure runs the model
(its heatmaps are the model's gradients), on the run's stored example of image #0."""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import hbbench.report.plots as P
from hbbench import examples_store
from hbbench.datasets import cell_params, load_dataset
from hbbench.labels import eps_label
from hbbench.plugins import load_refs
from hbbench.report.data import Run, focus, pick, setting_label
from hbbench.report.document import Doc
from hbbench.rundir import RunDir
from hbbench.spec import parse_item
from hbbench.threats import threat_order

NO_EXAMPLES = ("No example panels: this run stored no adversarial examples (it was made with --save-examples 0); "
               "`hbbench sweep --save-examples N` keeps the first N images' examples per cell, and the report draws "
               "its panels from them without attacking again.")
BEFORE_EXAMPLES = ("No example panels: this run was made before hbbench stored adversarial examples; run its sweep "
                   "again under another --run name to store them (the report draws its panels from them without "
                   "attacking again).")


def examples(doc: Doc, run: Run, n_examples: int, device: str):
    doc.heading(2, "Examples", "examples")
    try:
        drawn = example_figure(run, n_examples)
    except Exception as exc:  # noqa: BLE001 - the report must not die for its illustration
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        doc.para(f"Example panels could not be drawn ({type(exc).__name__}: {reason}); "
                 "the numbers above do not depend on them.", cls="note")
        return
    if isinstance(drawn, str):
        doc.para(drawn)
        return
    fig, caption, base = drawn
    doc.figure("examples.png", P.png_bytes(fig, dpi=90, colors=256, crop=False), caption,
               "example images: clean, adversarial, defended")
    heatblur = [d for d in run.defenses if parse_item(d)[0] == "heatblur"]
    if heatblur:
        heatblur_explain(doc, run, heatblur[0], base, device)


def _chosen_samples(rec: pd.DataFrame, n: int) -> list[int]:
    """Images the clean model gets right and the attack flips first, then the others it gets right, then any."""
    right = rec.clean_pred == rec.label
    flipped = right & (rec.adv_pred != rec.label)
    order = list(rec.index[flipped]) + list(rec.index[right & ~flipped]) + list(rec.index[~right])
    return [int(rec.loc[i, "sample"]) for i in order[:n]]


def _stored(run: Run, cell_id: str) -> dict[str, dict[int, np.ndarray]] | None:
    """The cell's stored arrays by sample index (``x_adv``, and in a cell with a defense ``x_defended``),
    or None when it kept none."""
    path = RunDir(run.root).cell_examples(cell_id)
    if not path.is_file():
        return None
    arrays = examples_store.read(path)
    samples = arrays["sample"].tolist()
    return {k: dict(zip(samples, arrays[k])) for k in ("x_adv", examples_store.DEFENDED) if k in arrays}


def _dataset(run: Run):
    """The run's data as its sweep loaded it (its plugins first, then the cells' parameters), for the clean images."""
    spec = run.spec
    load_refs(spec.get("plugins") or [])
    name = spec.get("dataset", "imagenet-samples")
    params = cell_params(name, spec.get("dataset_params") or {})
    return load_dataset(name, n=spec.get("n"), seed=spec.get("seed", 0), **params)


def _top3(rec: pd.Series, output: str, names):
    """Panel lines and whether top-1 is right, from the run's recorded top-5 of ``output``."""
    classes, probs, label = list(rec[f"{output}_top5"])[:3], list(rec[f"{output}_top5_prob"])[:3], int(rec.label)
    ok = bool(int(classes[0]) == label)
    lines = [f"{'✓' if k == 0 and ok else ('✗' if k == 0 else ' ')} {names(c)[:20]} {p:.2f}"
             for k, (c, p) in enumerate(zip(classes, probs))]
    return lines, ok


def example_figure(run: Run, n_examples: int):
    """(figure, caption, (threat, base cell id, its stored examples)), or the sentence saying why there are no panels."""
    attack, eps = focus(run.summary)
    setting = pick(run.summary, attack, eps)
    threat = threat_order(setting.threat_model)[0]  # oblivious when the run has it
    setting = setting[setting.threat_model == threat]
    base_row = setting[setting.defense == "none"] if (setting.defense == "none").any() else setting.iloc[:1]
    base_id = base_row.cell_id.iloc[0]
    stored = (_stored(run, base_id) or {}).get("x_adv")
    if not stored:
        return BEFORE_EXAMPLES if "save_examples" not in run.manifest else NO_EXAMPLES
    rec = run.records[base_id].set_index("sample", drop=False)
    chosen = _chosen_samples(rec.loc[sorted(stored)].reset_index(drop=True), n_examples)
    ds = _dataset(run)
    names = _class_names(ds.num_classes)
    x = ds.images(chosen)

    adv_col = f"adversarial ({setting_label(attack, eps)})"
    pert_col = "perturbation δ (stretched)"
    defended, undrawn = {}, []
    for d in run.defenses:
        r = setting[setting.defense == d]
        if d == "none" or r.empty:
            continue
        cid = r.cell_id.iloc[0]
        arrays = _stored(run, cid) or {}
        own = arrays.get(examples_store.DEFENDED)  # absent in a run stored before the defended images were kept
        if own is None or any(s not in own for s in chosen):
            undrawn.append(d)
            continue
        shared = all(np.array_equal(arrays["x_adv"][s], stored[s]) for s in chosen)  # oblivious: the same examples
        column = f"{d} on adversarial" + ("" if shared else " crafted against it")
        defended[column] = (own, run.records[cid].set_index("sample", drop=False))

    rows = []
    for k, s in enumerate(chosen):
        r = rec.loc[s]
        delta = stored[s] - x[k]
        scale = float(np.abs(delta).max()) or 1.0
        clean_lines, clean_ok = _top3(r, "clean", names)
        adv_lines, adv_ok = _top3(r, "adv", names)
        row = {"title": f"#{s}: {names(int(r.label))[:22]}",
               "clean": {"img": x[k], "lines": clean_lines, "ok": clean_ok},
               adv_col: {"img": stored[s], "lines": adv_lines, "ok": adv_ok},
               pert_col: {"img": 0.5 + delta / (2 * scale),
                          "lines": [f"max |δ| = {scale * 255:.2g}/255", "gray = 0; stretched to ±max"],
                          "ok": None}}
        for column, (own, drec) in defended.items():
            lines, ok = _top3(drec.loc[s], "def_adv", names)
            row[column] = {"img": own[s], "lines": lines, "ok": ok}
        rows.append(row)
    fig = P.example_panels(rows, ["clean", adv_col, pert_col] + list(defended))
    caption = (f"Threat model: {threat}. {len(chosen)} images (clean model right, attack succeeds first, among the "
               f"{len(stored)} whose adversarial examples the run stored) under {setting_label(attack, eps)}, the "
               "attack setting that hurts the undefended model most; each panel lists the top-3 predictions the run "
               "recorded, with probabilities (✓/green frame: top-1 correct, ✗/red: wrong). A defense's panel shows "
               "the input the network classified (what the defense made of the adversarial example) and its top-3. "
               "Drawn from the run's stored examples and records: nothing is attacked again.")
    if undrawn:
        caption += (f" No panel for {', '.join(undrawn)}: the run stored no defended images for these images "
                    "(a run made before hbbench kept them, or a cell that kept fewer images).")
    return fig, caption, (threat, base_id, stored)


def _class_names(num_classes: int):
    """Short class names: ImageNet's lemmas read from timm's own tables (without importing timm, which
    costs the report seconds of torch import), else "class i"."""
    if num_classes == 1000:
        names = _imagenet_lemmas()
        if names:
            return lambda i: names[int(i)]
    return lambda i: f"class {int(i)}"


def _imagenet_lemmas() -> list[str] | None:
    """The 1000 classes' first lemma in timm's class order (timm.data.ImageNetInfo's tables), or None."""
    spec = importlib.util.find_spec("timm")  # locates the package; imports nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    info = Path(spec.submodule_search_locations[0]) / "data" / "_info"
    try:
        synsets = (info / "imagenet_synsets.txt").read_text().split()
        lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
                      if "\t" in line)
    except OSError:
        return None
    return [lemmas.get(s, s).split(",")[0] for s in synsets] if len(synsets) == 1000 else None


def heatblur_explain(doc: Doc, run: Run, label: str, base, device: str):
    """The Heat-and-Blur explanation figure (hbbench.explain_figure) for image #0 and the run's stored
    adversarial example of it, with the run's Heat-and-Blur parameters ``label``, on the run's model."""
    threat, base_id, stored = base
    try:
        row = run.summary[run.summary.cell_id == base_id].iloc[0]
        model_name, model_params = parse_item(str(row.model))
        if model_params or run.spec.get("dataset_params") or run.spec.get("model_params"):
            doc.para("The Heat-and-Blur explanation figure is drawn only for runs with registry defaults "
                     "(this run sets model or dataset parameters).")
            return
        if 0 not in stored:
            doc.para("The Heat-and-Blur explanation figure needs image #0's stored adversarial example; this run "
                     "did not keep it.")
            return
        # The figure runs the model (ART, captum): imported only when drawn, so a report without it stays fast.
        from hbbench import classifier, defenses, explain_figure as figure, models  # lazy: torch and ART
        ds = _dataset(run)
        clf = classifier.make_classifier(models.load_model(model_name), device=device)
        hb = defenses.make_defense("heatblur", clf, **parse_item(label)[1])
        names = figure.class_names(clf.nb_classes)
        y = int(ds.y[0])
        eps = "" if pd.isna(row.eps) else f" ε={eps_label(row.eps)}"
        title = (f"Heat-and-Blur on {ds.ids[0] if ds.ids else '#0'} (true: {names(y)}) — {hb!r}; attack: {threat} "
                 f"{row.attack}{eps}, the example the run stored")
        with tempfile.TemporaryDirectory() as tmp:  # doc.figure writes the report's copy, under its own name
            out = Path(tmp) / "heatblur_explain.png"
            fig = figure.draw(ds.images([0]), stored[0][None], y, clf, hb, title, f"{row.attack}{eps}", out)
            figure.plt.close(fig)
            png = out.read_bytes()
    except Exception as exc:  # noqa: BLE001 - the report must not die for its illustration
        doc.para(f"The Heat-and-Blur explanation figure could not be drawn ({type(exc).__name__}: {exc}).",
                 cls="note")
        return
    doc.figure("heatblur_explain.png", png,
               f"How {label} defends image #0: relevance heatmaps of the top predicted classes, the combined mask, "
               f"the blurred copy and the defended input, clean (top row) and under the run's stored {threat} "
               f"example (bottom row); drawn by hbbench.explain_figure.", "Heat-and-Blur explanation for one image")
