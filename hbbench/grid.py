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

from hbbench.errors import HBBenchError
from hbbench.spec import Cell, SweepSpec, parse_item, stable_hash


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
    from hbbench.plugins import load_refs

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
    cells = tuple(spec.cells())
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
    from hbbench.models import MODELS

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
    from hbbench.datasets import DATASETS
    from hbbench.models import MODELS

    entry, _ = (MODELS if kind == "model" else DATASETS).resolve(name)
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in entry.params and not (key == "download" and kind == "dataset"):
            raise HBBenchError(f"{kind} '{name}' takes no --{key.replace('_', '-')}")
    return {k: v for k, v in given.items() if k in entry.params}
