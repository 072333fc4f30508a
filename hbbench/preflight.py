"""Before a sweep marks its run as started: the data and every model load and fit each other, and every
attack and defense of the grid can be built, so a bad file, weight, shape or parameter value is
refused with one line before any work starts, not inside a worker."""
from __future__ import annotations

from hbbench.attacks import make_attack
from hbbench.classifier import make_classifier
from hbbench.datasets import load_dataset
from hbbench.defenses import make_defense
from hbbench.errors import HBBenchError
from hbbench.execution import get_context, validate_compatible
from hbbench.models import load_model


def preflight(spec, cells, in_process: bool) -> int:
    """Load the data (labels and image headers first, the cheap part) and every model, and check that
    they fit, before the run is marked as started: a bad file, weight or shape fails here with one
    message, not inside a worker. The in-process executor keeps what was loaded (no second model
    load); other executors load their own. Returns the number of samples."""
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
