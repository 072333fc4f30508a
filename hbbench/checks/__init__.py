"""Evaluation checks: did the attacks behind a run's numbers work? (docs/evaluation.md)

Each check is registered with its cost and its remedy kinds (hbbench.checks.remedies): ``cheap``
ones read only what every sweep stores (per-image records and the probes of hbbench.checks.probes)
and run by default; ``costly`` ones add attack runs
(auxiliary cells, hbbench.checks.auxiliary) and run with ``--checks full`` or by name. A check
returns rows of (defense, threat model, eps) with a status: pass, warn, fail, info (named, not
judged) or not run, the numbers behind it and a one-line reason. A failed check turns a defense's
verdict into "unverified" unless its remedies answer it ("repaired");
a failed ``model_sanity`` (hbbench.checks.sanity, registered first) every verdict of its model.
"""
from __future__ import annotations

from hbbench.errors import HBBenchError
from hbbench.registry import Registry

CHECKS = Registry("check", skip=1)  # a check takes the run's Evidence (hbbench.checks.evidence)
STATUSES = ("fail", "warn", "pass", "info", "not run")  # info: named, not judged (inner_optimisation)
LEVELS = ("none", "default", "full")


def import_checks() -> None:
    """Register the checks. Not at import time: the report reads checks.csv through this package
    and must not import the attack code the checks use."""
    from hbbench.checks import sanity, evaluate  # noqa: F401  (model_sanity first: it comes before the rest)


def resolve_checks(text: str | None) -> tuple[str, ...]:
    """'none' | 'default' (the cheap checks) | 'full' (all) | a comma list of check names."""
    import_checks()
    text = "default" if text is None else str(text).strip()
    if text == "none":
        return ()
    if text in ("default", "full"):
        return tuple(e.name for e in CHECKS.entries() if text == "full" or e.meta["cost"] == "cheap")
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in CHECKS:
            raise HBBenchError(f"unknown check '{name}'; valid choices: {', '.join(LEVELS)} or check names "
                               f"{', '.join(CHECKS.names())}")
    return tuple(dict.fromkeys(names))
