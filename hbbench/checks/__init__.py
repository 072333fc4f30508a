"""Evaluation checks: did the attacks behind a run's numbers work? (docs/evaluation.md)

Each check is registered with its cost and its remedy kinds (hbbench.checks.remedies): ``cheap``
ones read only what every sweep stores (per-image records and the probes of hbbench.checks.probes)
and run by default; ``costly`` ones add attack runs
(auxiliary cells, hbbench.checks.auxiliary) and run with ``--checks full`` or by name. The checks
register when hbbench.checks.evaluate is imported (hbbench.checks.run does): the report reads
checks.csv through hbbench.checks.table without importing the attack code the checks use. A check
returns rows of (defense, threat model, eps) with a status: pass, warn, fail, info (named, not
judged) or not run, the numbers behind it and a one-line reason. A failed check turns a defense's
verdict into "unverified" unless its remedies answer it ("repaired");
a failed ``model_sanity`` (hbbench.checks.sanity, registered first) every verdict of its model.
"""
from __future__ import annotations

from hbbench.registry import Registry

CHECKS = Registry("check", skip=1)  # a check takes the run's Evidence (hbbench.checks.evidence)
STATUSES = ("fail", "warn", "pass", "info", "not run")  # info: named, not judged (inner_optimisation)
LEVELS = ("none", "default", "full")
