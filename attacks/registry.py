"""The attack registry. A factory takes the ART classifier to attack first, then the preset's
parameters (ART's own names: eps, eps_step, max_iter, ...), and returns an ART ``EvasionAttack``."""
from hbbench.registry import Registry

ATTACKS = Registry("attack", skip=1)
