"""Every registry by the kind `hbbench list` names. It sits on the top layer, beside the CLI that
reads it: importing it registers everything hbbench ships (the models, attacks and defenses pull in
torch and ART), so no lower module needs to know all the kinds."""
from __future__ import annotations

from hbbench.attacks import ATTACKS
from hbbench.checks import CHECKS
from hbbench.checks.run import resolve_checks  # noqa: F401  (importing checks.run registers the checks)
from hbbench.datasets import DATASETS
from hbbench.defenses import DEFENSES
from hbbench.errors import HBBenchError
from hbbench.executors import EXECUTORS
from hbbench.models import MODELS
from hbbench.registry import Registry

REGISTRIES = {"models": MODELS, "datasets": DATASETS, "attacks": ATTACKS, "defenses": DEFENSES,
              "executors": EXECUTORS, "checks": CHECKS}


def registry_of(kind: str) -> Registry:
    """The registry of a kind as `hbbench list` names it."""
    if kind not in REGISTRIES:
        raise HBBenchError(f"no registry of {kind}; kinds: {', '.join(REGISTRIES)}")
    return REGISTRIES[kind]
