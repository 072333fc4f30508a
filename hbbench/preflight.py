"""Before a sweep marks its run as started: the data and every model load and fit each other, and every
attack and defense of the grid can be built, so a bad file, weight, shape or parameter value is
refused with one line before any work starts, not inside a worker."""
from __future__ import annotations

from typing import TYPE_CHECKING

from hbbench.datasets import Dataset, load_dataset
from hbbench.errors import HBBenchError

if TYPE_CHECKING:
    from hbbench.spec import Cell


def preflight(spec, cells, in_process: bool) -> int:
    """Load the data (labels and image headers first, the cheap part) and every model, and check that
    they fit, before the run is marked as started: a bad file, weight or shape fails here with one
    message, not inside a worker. The in-process executor keeps what was loaded (no second model
    load); other executors load their own. Returns the number of samples."""
    from hbbench.classifier import make_classifier
    from hbbench.models import load_model
    from hbbench.runner import get_context

    data = load_dataset(spec.dataset, n=spec.n, seed=spec.seed, **spec.dataset_params)
    by_model: dict[tuple, list] = {}
    for c in cells:
        by_model.setdefault(c.model_key, []).append(c)
    for model_cells in by_model.values():
        first = model_cells[0]
        if in_process:
            classifier = get_context(first, spec.batch_size, spec.device).classifier  # loads, checks the fit
        else:
            model = load_model(first.model, **dict(first.model_params))
            validate_compatible(first, model, data)
            classifier = make_classifier(model, device="cpu")
        _validate_constructible(model_cells, classifier)
    return len(data)


def _validate_constructible(cells, classifier) -> None:
    """Build every attack and defense of the grid once (cheap: nothing runs), so a parameter value
    ART or a preset refuses (pgd[max_iter=-1], jpeg[quality=200]) is named before any work starts."""
    from hbbench.attacks import make_attack
    from hbbench.defenses import make_defense

    built = set()
    for c in cells:
        attack_params = {**dict(c.attack_params), **({"eps": c.eps} if c.eps is not None else {})}
        todo = [("attack", c.attack, (c.attack, c.eps), make_attack, c.attack_name, attack_params),
                ("defense", c.defense, c.defense, make_defense, c.defense_name, dict(c.defense_params))]
        for kind, label, key, factory, name, params in todo:
            if (kind, key) in built:
                continue
            built.add((kind, key))
            try:
                factory(name, classifier, **params)
            except (HBBenchError, ValueError, TypeError) as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise HBBenchError(f"{kind} '{label}': {message}") from None


def validate_compatible(cell: Cell, model, data: Dataset) -> None:
    """A model and a dataset fit: the same class set where both declare one, enough outputs, the input shape."""
    if data.classes and model.classes and data.classes != model.classes:  # both declared (docs/evaluation.md)
        raise HBBenchError(f"dataset {cell.dataset} is labelled with the {data.classes} classes but model "
                           f"{cell.model_label or cell.model} outputs the {model.classes} classes: the same index "
                           "names another class; use a model of the dataset's classes")
    if data.num_classes > model.num_classes:
        raise HBBenchError(f"dataset {cell.dataset} has {data.num_classes} classes but model {cell.model} "
                           f"outputs {model.num_classes}")
    if tuple(data.sample_shape) != tuple(model.input_size):
        raise HBBenchError(f"dataset {cell.dataset} has images of shape {data.sample_shape} but model "
                           f"{cell.model} expects {model.input_size}")
