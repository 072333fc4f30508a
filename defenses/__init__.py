"""Defenses: ART's preprocessing baselines, a plain blur, and Heat-and-Blur, in one registry."""
from hbbench.defenses import baselines  # noqa: F401  (registers the baselines)
from hbbench.defenses import heatblur  # noqa: F401
from hbbench.defenses.registry import DEFENSES
from hbbench.defenses.threat import THREAT_MODELS, StraightThrough, attack_defenses, is_differentiable

__all__ = ["DEFENSES", "THREAT_MODELS", "StraightThrough", "attack_defenses", "is_differentiable", "make_defense"]


def make_defense(name: str, classifier, **params):
    """Create the registered defense ``name`` for ``classifier`` (an undefended ART classifier);
    returns an ART preprocessor, or None for ``none``."""
    return DEFENSES.create(name, classifier, **params)
