"""One resolution of a run: a spec, or the spec a run directory's manifest records, becomes a ``Grid``:
its plugins loaded, its cells expanded and checked against the registries, its id computed, frozen.

A grid's cells may name the entries its plugins register, so the plugins must be loaded before the
spec expands. sweep, check, verify, report and explain all go through ``resolve``; nothing else
expands a spec, so no command can forget the plugins (verify once did, and called a healthy plugin
run's manifest damaged).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from hbbench.attacks import ATTACKS, attack_norm, has_budget
from hbbench.datasets import DATASETS, cell_params
from hbbench.defenses import DEFENSES
from hbbench.errors import HBBenchError
from hbbench.models import MODELS
from hbbench.parsing import parse_budget, parse_item
from hbbench.plugins import load_refs
from hbbench.registry import refuse_unknown_params
from hbbench.spec import Cell, SweepSpec, stable_hash


@dataclass(frozen=True)
class Grid:
    spec: SweepSpec  # a private copy: editing the spec a grid was resolved from does not change it
    plugins: tuple  # hbbench.plugins.Plugin, loaded, in the spec's order
    cells: tuple[Cell, ...]
    id: str  # of the cells: what a run directory and each finished cell record

    @property
    def run_name(self) -> str:
        """Runs are named by the grid they hold, so re-running a command resumes its own run."""
        return f"run-{self.id}"

    def spec_dict(self) -> dict:
        return self.spec.to_dict()


def resolve(spec: SweepSpec | dict, source: str = "spec", model_options: dict | None = None,
            dataset_options: dict | None = None) -> Grid:
    """The grid of ``spec``. ``model_options`` / ``dataset_options``: the command line's --weights,
    --download, --trust-checkpoint, given to the models and the dataset that take them (an option
    nothing takes is an error, not silently dropped); they become part of the spec."""
    if isinstance(spec, SweepSpec):
        spec = copy.deepcopy(spec)
        spec.validate(source)
    else:
        spec = SweepSpec.from_dict(copy.deepcopy(dict(spec)), source=source)
    plugins = tuple(load_refs(spec.plugins))  # before the cells: they may name the plugins' entries
    if model_options:
        spec.model_params.update(_model_options(spec.models, **model_options))
    if dataset_options:
        spec.dataset_params.update(accepted_options("dataset", spec.dataset, **dataset_options))
    cells = tuple(expand(spec))
    return Grid(spec, plugins, cells, stable_hash(sorted(c.id for c in cells)))


def resolve_manifest(manifest: dict, source: str) -> Grid:
    """The grid a run directory's manifest records (``source``: the manifest's path, for messages)."""
    raw = manifest.get("spec")
    if not isinstance(raw, dict):
        raise HBBenchError(f"{source}: no spec in it (edited?)")
    return resolve(raw, source=source)


def _model_options(models: list[str], **options) -> dict:
    """The model options for a grid: with one model, as ``accepted_options`` says; with several, an
    option is given to each model that takes it (and refused when none does), and --weights, which
    names one model's file, is refused in favour of NAME[weights=PATH]."""
    if len(models) == 1:
        return accepted_options("model", parse_item(models[0])[0], **options)
    if options.get("weights") is not None:
        raise HBBenchError("--weights names one model's weights; with several models give each its own: "
                           "--model 'torchvision:resnet18[weights=PATH],...'")
    taken = {}
    for key, value in options.items():
        if value is None:
            continue
        if not any(key in MODELS.resolve(parse_item(m)[0])[0].params for m in models):
            raise HBBenchError(f"none of the models {', '.join(models)} takes --{key.replace('_', '-')}")
        taken[key] = value
    return taken


def accepted_options(kind: str, name: str, **options) -> dict:
    """The options the named model or dataset factory takes; one it can't take is an error."""
    entry, _ = (MODELS if kind == "model" else DATASETS).resolve(name)
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in entry.params and not (key == "download" and kind == "dataset"):
            raise HBBenchError(f"{kind} '{name}' takes no --{key.replace('_', '-')}")
    return {k: v for k, v in given.items() if k in entry.params}


def expand(spec: SweepSpec) -> list[Cell]:
    """The cells of ``spec``, checked against the registries; `none` is always included as the
    baseline. The commands expand a spec through ``resolve``, which loads its plugins first."""
    models = [_model(spec, label) for label in spec.models]
    accepted = DATASETS.resolve(spec.dataset)[0].params
    _validate_params("dataset", spec.dataset, spec.dataset_params,
                     {k: v for k, v in accepted.items() if k not in ("n", "seed")})  # those are --n and --seed
    data_params = cell_params(spec.dataset, spec.dataset_params)
    defenses = ["none"] + [d for d in spec.defenses if d != "none"]
    cells = []
    for (m_label, m_name, m_params), a_label in ((m, a) for m in models for a in spec.attacks):
        a_name, a_params = parse_item(a_label)
        entry, _ = ATTACKS.resolve(a_name)
        _validate_params("attack", a_label, a_params, entry.params)
        budgets = spec.eps if has_budget(a_name) and "eps" not in a_params else [a_params.get("eps")]
        if attack_norm(a_name, a_params) == "inf":
            _refuse_linf_beyond_pixels(a_label, budgets)
        for eps in budgets:
            for d_label in defenses:
                d_name, d_params = parse_item(d_label)
                _validate_params("defense", d_label, d_params, DEFENSES.resolve(d_name)[0].params)
                for threat in spec.threat_models:
                    cells.append(Cell(m_name, spec.dataset, spec.n, spec.seed, a_label, a_name,
                                      _freeze(a_params), eps, d_label, d_name, _freeze(d_params), threat,
                                      _freeze(m_params), _freeze(data_params), m_label))
    return cells


def _model(spec: SweepSpec, label: str) -> tuple[str, str, dict]:
    """(label, registry name, parameters) of one model of the grid: its own NAME[key=value] params
    over ``model_params`` (the command line's --weights, --download, ...) where the model takes them."""
    name, own = parse_item(label)
    entry, _ = MODELS.resolve(name)
    _validate_params("model", label, own, entry.params)
    shared = {k: v for k, v in spec.model_params.items() if k in entry.params}
    return label, name, {**shared, **own}


def _validate_params(kind, label, given: dict, accepted: dict) -> None:
    refuse_unknown_params(kind, label, given, accepted)
    for key, value in given.items():  # a value of the wrong type fails here, not deep inside ART
        default = accepted[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
                and abs(value) != float("inf")
        else:
            ok = True
        if not ok:
            want = {bool: "true or false", int: "an integer", float: "a number"}[type(default)]
            raise HBBenchError(f"{kind} '{label}': {key} must be {want}, got {value!r}")
        if key == "eps" and value is not None:
            parse_budget(value)


def _refuse_linf_beyond_pixels(label: str, budgets) -> None:
    """Pixels lie in [0, 1]: an L-inf budget above 1 is a whole-range attack, almost always a budget
    typed in 0-255 units. L2 budgets above 1 are ordinary and stay valid."""
    for eps in budgets:
        if eps is not None and eps > 1:
            raise HBBenchError(f"attack '{label}': an L-inf budget of {eps:g} exceeds the pixel range [0, 1]; "
                               f"did you mean {eps:g}/255?")


def _freeze(params: dict) -> tuple:
    return tuple(sorted(params.items()))
