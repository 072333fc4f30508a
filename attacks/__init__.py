"""Attacks: named presets of ART's evasion attacks in one registry."""
from hbbench.attacks import presets  # noqa: F401  (registers the presets)
from hbbench.attacks.registry import ATTACKS

__all__ = ["ATTACKS", "has_budget", "make_attack"]


def has_budget(name: str) -> bool:
    """Whether the preset takes an ``eps`` budget (and is swept over ``--eps``)."""
    entry, _ = ATTACKS.resolve(name)
    return "eps" in entry.params


def make_attack(name: str, classifier, **params):
    """Create the ART attack preset ``name`` against ``classifier``; ``params`` override the preset's
    defaults under ART's own names (``eps``, ``eps_step``, ``max_iter``, ...)."""
    return ATTACKS.create(name, classifier, **params)
