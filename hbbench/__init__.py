"""hbbench: an adversarial-robustness benchmark on ART, with the Heat-and-Blur defense.

The Python API (each name is documented where it is defined):

    load_model(name)                       -> LoadedModel      hbbench.models
    load_dataset(name, n=None, seed=0)     -> Dataset          hbbench.datasets
    make_classifier(model, defenses=(), device="auto") -> ART PyTorchClassifier   hbbench.classifier
    make_attack(name, classifier, **params)  -> ART EvasionAttack                hbbench.attacks
    make_defense(name, classifier, **params) -> ART Preprocessor (or None)       hbbench.defenses
    sweep(spec)                            -> pandas.DataFrame  hbbench.api
    SweepSpec                              the grid             hbbench.spec
    load_run(path)                         -> Run (summary, checks, manifest, records(), report())  hbbench.runs
    compare(run_a, run_b)                  -> pandas.DataFrame, per-cell differences + sign test   hbbench.runs

Names are imported on first use, so `hbbench --help` does not pay for torch and ART.
"""
import importlib

__version__ = "0.1.0"

_API = {
    "load_model": "hbbench.models",
    "load_dataset": "hbbench.datasets",
    "make_classifier": "hbbench.classifier",
    "make_attack": "hbbench.attacks",
    "make_defense": "hbbench.defenses",
    "sweep": "hbbench.api",
    "SweepSpec": "hbbench.spec",
    "load_run": "hbbench.runs",
    "compare": "hbbench.runs",
    "Run": "hbbench.runs",
}
__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'hbbench' has no attribute {name!r}")
