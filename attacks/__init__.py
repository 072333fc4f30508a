"""Attacks: named presets of ART's evasion attacks in one registry."""
from hbbench.attacks import presets, without_gradient  # noqa: F401  (register the presets)
from hbbench.attacks.early_stop import TRANSFER
from hbbench.attacks.presets import MarginLoss, canonical_norm
from hbbench.attacks.registry import ATTACKS

__all__ = ["ATTACKS", "MarginLoss", "TRANSFER", "attack_norm", "has_budget", "make_attack"]


def has_budget(name: str) -> bool:
    """Whether the preset takes an ``eps`` budget (and is swept over ``--eps``), as it declares."""
    return ATTACKS.resolve(name)[0].meta["budget"]


def attack_norm(name: str, params: dict | None = None) -> str:
    """The norm the preset's perturbation is measured in: its ``norm`` parameter when given, else
    what it declares. 'inf' or '2'."""
    given = (params or {}).get("norm")
    return canonical_norm(given if given is not None else ATTACKS.resolve(name)[0].meta["norm"])


def make_attack(name: str, classifier, **params):
    """Create the ART attack preset ``name`` against ``classifier``; ``params`` override the preset's
    defaults under ART's own names (``eps``, ``eps_step``, ``max_iter``, ...)."""
    return ATTACKS.create(name, classifier, **params)
