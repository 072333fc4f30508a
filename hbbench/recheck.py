"""``hbbench recheck FILE``: score an export's adversarial examples again, from scratch.

First an audit of every example, with no model: of the dataset's image shape, whose id and label must
be the export's, then the sweep's own audit (hbbench.audit: finite, in [0, 1], within the cell's
budget in its attack's norm, with the same float tolerances), measured against the clean image loaded
again from the dataset the export names (its spec: dataset, n, seed). Then each example goes through the defense and the model, as every
threat model scores it (oblivious, bpda and adaptive alike: the defense runs at prediction time), and
its top-1 is compared with the one the run recorded. A disagreement is a failure unless the image sits
on a decision boundary (top-1 minus top-2 log-probability, the logit gap, below ``BOUNDARY``, recorded
or recomputed: it is named, as float noise) or the defense draws at random (named; only approximate agreement is
expected, since the run's draws depended on the whole shard it defended).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from hbbench import audit
from hbbench.errors import HBBenchError
from hbbench.execution import defend, get_context, make_cell_defense
from hbbench.export import load
from hbbench.grid import resolve
from hbbench.labels import eps_label

BOUNDARY = 1e-4  # logit gap (top-1 minus top-2 log-probability) under which an image sits on a decision boundary


@dataclass
class CellCheck:
    attack: str
    eps: float
    defense: str
    threat_model: str
    n: int  # the cell's images in the run
    exported: int
    top1_summary: float  # summary.csv's, over all n
    top1_stored: float  # the run's records, over the exported images
    top1_recomputed: float = float("nan")
    randomized: bool = False
    audit: list[str] = field(default_factory=list)  # examples that fail the audit, named
    flips: list[str] = field(default_factory=list)  # disagreements beyond float noise, named
    noise: list[str] = field(default_factory=list)  # disagreements on a boundary or under a random defense

    @property
    def label(self) -> str:
        eps = "" if np.isnan(self.eps) else f" eps={eps_label(self.eps)}"
        return f"{self.attack}{eps} x {self.defense} ({self.threat_model})"

    @property
    def failed(self) -> bool:
        return bool(self.audit or self.flips)


def recheck(path, model: str | None = None, defense: str | None = None, plugins=(), device: str | None = None,
            batch_size: int | None = None) -> list[CellCheck]:
    """Audit and re-score every cell of the export at ``path``; ``model``/``defense`` replace the run's
    (same registry syntax as ``hbbench sweep``), ``plugins`` register them (the run's plugin paths
    are not used: they name files on the machine that made the run)."""
    arrays = load(path)
    spec = dict(json.loads(str(arrays["manifest"]))["spec"])
    spec["plugins"] = list(plugins)
    if model:
        spec["models"], spec["model_params"] = [model], {}
    if defense:
        spec["defenses"] = [defense]
    spec["device"] = device or spec.get("device", "auto")
    bs = batch_size or int(spec.get("batch_size") or 32)
    grid = resolve(spec, source=str(path))
    return [_check_cell(arrays, i, _cell(grid, arrays, i, model, defense), bs, spec["device"])
            for i in range(len(arrays["cell_cell_id"]))]


def _cell(grid, arrays, i: int, model, defense):
    """The grid cell that scores exported cell ``i``."""
    eps = float(arrays["cell_eps"][i])
    for c in grid.cells:
        same_eps = (c.eps is None and np.isnan(eps)) or (c.eps is not None and np.isclose(c.eps, eps, rtol=1e-9))
        if c.attack == str(arrays["cell_attack"][i]) and same_eps and \
                c.threat_model == str(arrays["cell_threat_model"][i]) and \
                c.defense == (defense or str(arrays["cell_defense"][i])) and \
                (model or (c.model_label or c.model) == str(arrays["cell_model"][i])):
            return c
    raise HBBenchError(f"cell {arrays['cell_cell_id'][i]} ({arrays['cell_attack'][i]} / {arrays['cell_defense'][i]} / "
                       f"{arrays['cell_threat_model'][i]}) is not in the grid of the export's spec: edited?")


def _check_cell(arrays, i: int, cell, batch_size: int, device: str) -> CellCheck:
    rows = np.flatnonzero(arrays["cell"] == i)
    samples, ids, labels = arrays["sample"][rows], arrays["image_id"][rows], arrays["label"][rows]
    x_adv, stored = arrays["x_adv"][rows], arrays["stored_pred"][rows]
    check = CellCheck(str(arrays["cell_attack"][i]), float(arrays["cell_eps"][i]), str(arrays["cell_defense"][i]),
                      str(arrays["cell_threat_model"][i]), int(arrays["cell_n"][i]), len(rows),
                      float(arrays["cell_top1"][i]), float(np.mean(stored == labels)),
                      randomized=bool(arrays["cell_randomized"][i]))
    ctx = get_context(cell, batch_size, device)
    ds = ctx.dataset
    name = lambda k: f"#{int(samples[k])} ({ids[k]})"  # noqa: E731
    known = samples < len(ds)
    for k in np.flatnonzero(~known):
        check.audit.append(f"{name(k)}: not an image of {cell.dataset} (it has {len(ds)})")
    for k in np.flatnonzero(known):
        s = int(samples[k])
        if ds.ids and str(ds.ids[s]) != str(ids[k]):
            check.audit.append(f"{name(k)}: image {s} of {cell.dataset} is {ds.ids[s]}, not {ids[k]}")
        if int(ds.y[s]) != int(labels[k]):
            check.audit.append(f"{name(k)}: label {int(labels[k])} in the export, {int(ds.y[s])} in {cell.dataset}")
    if x_adv.shape[1:] != tuple(ds.sample_shape):
        check.audit.append(f"examples of shape {x_adv.shape[1:]}; {cell.dataset}'s images are {tuple(ds.sample_shape)}")
        return check
    clean = ds.images(samples[known].tolist())
    eps, norm = (None if np.isnan(check.eps) else check.eps), str(arrays["cell_norm"][i])
    if eps is not None and norm not in audit.NORM_LABEL:
        check.audit.append(f"norm {norm!r}: not one the audit measures ({', '.join(audit.NORM_LABEL)})")
        return check
    for k, what in audit.image_violations(clean, x_adv[known], eps, norm).items():
        check.audit.append(f"{name(np.flatnonzero(known)[k])}: {what}")
    if check.audit:
        return check  # a forged example is not scored
    x_def = defend(cell, make_cell_defense(cell, ctx.classifier), 0, batch_size, x_adv)[0]  # seeded: repeatable
    probs = ctx.predict(x_def)
    pred = probs.argmax(1)
    top2 = -np.sort(-probs, axis=1)[:, :2].astype(np.float64)
    margin = np.log(top2[:, 0]) - np.log(np.maximum(top2[:, 1], 1e-45))
    check.top1_recomputed = float(np.mean(pred == labels))
    for k in np.flatnonzero(pred != stored):
        what = (f"{name(k)}, label {int(labels[k])}: the run's top-1 {int(stored[k])}, recomputed {int(pred[k])} "
                f"(logit gap {arrays['stored_margin'][rows][k]:.2g} recorded, {margin[k]:.2g} now)")
        if check.randomized:
            check.noise.append(f"{what}: the defense draws at random")
        elif min(arrays["stored_margin"][rows][k], margin[k]) < BOUNDARY:
            check.noise.append(f"{what}: on a decision boundary")
        else:
            check.flips.append(what)
    return check
