"""Threat models: what the attacker knows of the defense, and which gradient it gets through it.

This module is the one definition of a threat model (name, plot title, one-sentence description,
whether the attack is crafted against the defense, which gradient the attacker gets, how many draws
of a randomized defense each gradient averages); spec, runner, checks, report, plots and CLI all read
it from here. It needs neither torch nor ART, so the report and the leaderboard import it freely; the
preprocessors that put a threat model into effect live in hbbench.defenses.threat. A label is a name
with optional parameters: ``bpda``, ``adaptive[eot=8]``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from hbbench.errors import HBBenchError
from hbbench.parsing import parse_item
from hbbench.registry import refuse_unknown_params


@dataclass(frozen=True)
class ThreatModel:
    name: str
    title: str  # short, for plot panels
    description: str  # one sentence, for reports and `hbbench list`
    crafted_against_defense: bool  # False: the attack sees only the undefended model
    gradient: str  # what the attacker differentiates through the defense: none, identity, true
    eot: int = 1  # Expectation over Transformation: the gradient is the mean over this many defense draws

    @property
    def label(self) -> str:
        return self.name if self.eot == 1 else f"{self.name}[eot={self.eot}]"



OBLIVIOUS = ThreatModel(
    "oblivious", "oblivious (attack ignores the defense)",
    "adversarial examples are crafted against the undefended model; the defense is applied only at "
    "prediction (the paper's setting)", crafted_against_defense=False, gradient="none")
BPDA = ThreatModel(
    "bpda", "BPDA (defense = identity on the backward pass)",
    "adversarial examples are crafted against the defended model, with the defense replaced by the identity "
    "on the backward pass (BPDA)", crafted_against_defense=True, gradient="identity")
ADAPTIVE = ThreatModel(
    "adaptive", "adaptive (true gradient where the defense has one)",
    "adversarial examples are crafted against the defended model through the defense's own gradient where it "
    "has one (BPDA where it has none)", crafted_against_defense=True, gradient="true")

THREAT_MODELS: dict[str, ThreatModel] = {t.name: t for t in (OBLIVIOUS, BPDA, ADAPTIVE)}


def get_threat_model(label: str) -> ThreatModel:
    """The threat model a label names: ``bpda``, ``bpda[eot=8]`` (EoT only for threat models that craft
    against the defense: an oblivious attacker never runs the defense)."""
    name, params = parse_item(str(label))
    if name not in THREAT_MODELS:
        raise HBBenchError(f"unknown threat model '{label}'; valid choices: {', '.join(THREAT_MODELS)} "
                           "(with [eot=K] for bpda and adaptive)")
    model = THREAT_MODELS[name]
    refuse_unknown_params("threat model", label, params, ("eot",))
    if "eot" not in params:
        return model
    eot = params["eot"]
    if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
        raise HBBenchError(f"threat model '{label}': eot must be an integer >= 1 (draws of the defense "
                           f"per gradient), got {eot!r}")
    if not model.crafted_against_defense and eot != 1:
        raise HBBenchError(f"threat model '{label}': eot applies to bpda and adaptive; an oblivious attack "
                           "never runs the defense")
    return replace(model, eot=eot)


def crafts_against_defense(defense: str, threat: str) -> bool:
    """Whether the adversarial examples of the cell (defense label, threat-model label) are crafted
    against the defended model; else against the undefended one, and shared by every defense of the
    threat model. The one definition: cells, report, leaderboard and checks all ask it."""
    return get_threat_model(threat).crafted_against_defense and parse_item(str(defense))[0] != "none"


def threat_order(labels) -> list[str]:
    """Threat-model labels in the order of what the attacker knows (oblivious, bpda, adaptive; EoT
    after the plain one), unknown names last."""
    labels = set(labels)
    rank = {name: i for i, name in enumerate(THREAT_MODELS)}

    def key(label):
        name = str(label).partition("[")[0]
        return (rank.get(name, len(rank)), str(label))
    return sorted(labels, key=key)
