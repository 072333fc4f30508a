"""The defense registry. A factory takes the undefended ART classifier first (so a defense can read
its model, normalisation, clip range and device) and returns an ART ``Preprocessor``; ``None``
means "no preprocessing" (the `none` baseline)."""
from hbbench.registry import Registry

DEFENSES = Registry("defense", skip=1)
