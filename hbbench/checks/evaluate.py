"""The checks themselves. Each reads the Evidence of a run and returns one row per defense x threat
model (x eps where it applies). Thresholds and their reasons: docs/evaluation.md."""
from __future__ import annotations

from hbbench.attacks import ATTACKS
from hbbench.checks import CHECKS, sanity  # noqa: F401  (model_sanity registers first: it comes before the rest)
from hbbench.checks import budget  # noqa: F401  (then the audit and budget use: budget, budget_use, budget_explored)
from hbbench.checks import binarization as B
from hbbench.checks.auxiliary import is_iterative_gradient
from hbbench.checks.evidence import Evidence
from hbbench.checks.stats import a_stronger_than_b
from hbbench.defenses import DEFENSES
from hbbench.threats import get_threat_model
from hbbench.labels import eps_label

ZERO_GRADIENT_FAIL = 0.2  # more than this share of masked gradients: the attack had nothing to follow
UNBOUNDED_MAX_TOP1 = 0.01  # a whole-range attack through a working gradient leaves (almost) nothing


def row(check, cell, status, reason, numbers="", eps="cell"):
    return {"check": check, "model": cell.model_label or cell.model, "defense": cell.defense, "threat_model": cell.threat_model,
            "eps": cell.eps if eps == "cell" else eps, "status": status, "reason": reason, "numbers": numbers}


def _not_through_defense(check, cell, eps=None):
    return row(check, cell, "not run", "the oblivious attacker never differentiates through the defense", eps=eps)


def _compare(check, cell, a_name, fooled_a, b_name, fooled_b, what, eps="cell"):
    """fail: A is significantly stronger than B (sign test); warn: A fools more images, not significantly."""
    test = a_stronger_than_b(fooled_a, fooled_b)
    numbers = f"A={a_name}, B={b_name}: {test.numbers()}"
    if test.significant:
        return row(check, cell, "fail", what, numbers, eps)
    if test.only_a > test.only_b:
        return row(check, cell, "warn", f"{what}, not significantly", numbers, eps)
    return row(check, cell, "pass", f"A fools no more images than B (A={a_name}, B={b_name})", numbers, eps)


@CHECKS.register("zero_gradient", "share of samples whose loss gradient through the defense is zero or NaN",
                 cost="cheap", remedy=("gradient",))
def zero_gradient(ev: Evidence) -> list[dict]:
    rows = []
    for (_, threat), cells in ev.groups("defense", "threat_model").items():
        cell = cells[0]
        if not cell.scored_on_attacked_model:
            rows.append(_not_through_defense("zero_gradient", cell))
            continue
        shares = [ev.summaries[c.id].get("gradient_zero_share") for c in cells if ev.done(c)]
        shares = [s for s in shares if s is not None]
        if not shares:
            rows.append(row("zero_gradient", cell, "not run", "no finished cell has the gradient probe", eps=None))
            continue
        share = max(shares)
        status = "fail" if share > ZERO_GRADIENT_FAIL else "warn" if share > 0 else "pass"
        rows.append(row("zero_gradient", cell, status,
                        f"{share:.0%} of samples get a zero or non-finite gradient through the defense",
                        f"share {share:.3f} (fail above {ZERO_GRADIENT_FAIL})", eps=None))
    return rows


@CHECKS.register("randomized_without_eot", "a randomized defense attacked with gradients but without EoT",
                 cost="cheap", remedy=("eot",))
def randomized_without_eot(ev: Evidence) -> list[dict]:
    rows = []
    for _, cells in ev.groups("defense", "threat_model").items():
        cell = cells[0]
        flags = [ev.summaries[c.id].get("defense_randomized") for c in cells if ev.done(c)]
        flags = [f for f in flags if f is not None]
        if not flags:
            rows.append(row("randomized_without_eot", cell, "not run", "no finished cell has the randomness probe",
                            eps=None))
        elif not any(flags):
            rows.append(row("randomized_without_eot", cell, "pass", "the defense is deterministic "
                            "(two seeds give the same output)", eps=None))
        elif not cell.scored_on_attacked_model:
            rows.append(_not_through_defense("randomized_without_eot", cell))
        elif get_threat_model(cell.threat_model).eot > 1:
            rows.append(row("randomized_without_eot", cell, "pass", f"randomized defense, gradients averaged over "
                            f"{get_threat_model(cell.threat_model).eot} draws (EoT)", eps=None))
        else:
            rows.append(row("randomized_without_eot", cell, "fail", "randomized defense attacked through single "
                            f"draws: use --threat '{cell.threat_model}[eot=8]'", "two seeds give different outputs",
                            eps=None))
    return rows


@CHECKS.register("single_step_beats_iterative", "FGSM stronger than PGD/BIM at the same eps and threat model",
                 cost="cheap", remedy=("restarts",))
def single_step_beats_iterative(ev: Evidence) -> list[dict]:
    rows = []
    for _, cells in ev.groups("defense", "threat_model", "eps").items():
        single = [c for c in cells if c.attack_name == "fgsm" and ev.done(c)]
        iterative = [c for c in cells if is_iterative_gradient(c) and ev.done(c)]
        if not single or not iterative:
            rows.append(row("single_step_beats_iterative", cells[0], "not run",
                            "needs FGSM and an iterative gradient attack at this eps"))
            continue
        results = [_compare("single_step_beats_iterative", s, s.attack, ev.fooled(s), i.attack, ev.fooled(i),
                            "the single step is stronger than the iterative attack (a failed optimisation)")
                   for s in single for i in iterative]
        rows.append(_worst(results))
    return rows


@CHECKS.register("transfer_beats_whitebox", "the oblivious attack (crafted on the undefended model) stronger "
                 "than the attack through the defense", cost="cheap", remedy=("gradient",))
def transfer_beats_whitebox(ev: Evidence) -> list[dict]:
    rows = []
    oblivious = {(c.attack, c.eps, c.defense): c for c in ev.cells if c.threat_model == "oblivious"}
    for (defense, threat, eps), cells in ev.groups("defense", "threat_model", "eps").items():
        cell = cells[0]
        if cell.defense_name == "none" or not get_threat_model(threat).crafted_against_defense:
            continue  # the comparison is between threat models of a defense
        pairs = [(oblivious.get((c.attack, c.eps, c.defense)), c) for c in cells]
        pairs = [(o, c) for o, c in pairs if o is not None and ev.done(o) and ev.done(c)]
        if not pairs:
            rows.append(row("transfer_beats_whitebox", cell, "not run", "needs the same attack under oblivious"))
            continue
        rows.append(_worst([_compare("transfer_beats_whitebox", c, f"{o.attack} oblivious",
                                     ev.fooled(o, on="defended"), f"{c.attack} {threat}", ev.fooled(c),
                                     "the transferred attack is stronger than the one through the defense "
                                     "(its gradient misleads)") for o, c in pairs]))
    return rows


@CHECKS.register("not_monotone", "defended accuracy rises with eps", cost="cheap", remedy=("restarts",))
def not_monotone(ev: Evidence) -> list[dict]:
    rows = []
    for (_, _, attack), cells in ev.groups("defense", "threat_model", "attack").items():
        done = sorted((c for c in cells if c.eps is not None and ev.done(c)), key=lambda c: c.eps)
        if len(done) < 2:
            continue
        results = [_compare("not_monotone", big, f"{attack} at {eps_label(small.eps)}", ev.fooled(small),
                            f"{attack} at {eps_label(big.eps)}", ev.fooled(big),
                            f"{attack} is stronger at the smaller budget (the larger one's optimisation failed)",
                            eps=big.eps)
                   for small, big in zip(done, done[1:])]
        rows.append(_worst(results))
    return rows


@CHECKS.register("unbounded", "PGD over the whole pixel range (50 steps of 0.01 by default, no random start) through the defense "
                 "must take defended top-1 to <= 0.01", cost="costly", remedy=("gradient",))
def unbounded(ev: Evidence) -> list[dict]:
    rows = []
    for added, _ in ev.auxiliary.get("unbounded", []):
        if not ev.done(added):
            rows.append(row("unbounded", added, "not run", "its attack run is missing", eps=None))
            continue
        top1 = float((~ev.fooled(added, on="defended")).mean())
        ok = top1 <= UNBOUNDED_MAX_TOP1
        rows.append(row("unbounded", added, "pass" if ok else "fail",
                        "the whole-range attack breaks every image" if ok else
                        "a whole-range attack through the defense leaves images correct: its gradient is broken",
                        f"defended top-1 {top1:.3f} on {len(ev.fooled(added))} images (fail above "
                        f"{UNBOUNDED_MAX_TOP1})", eps=None))
    return rows


@CHECKS.register("not_converged", "twice the iterations lowers defended accuracy", cost="costly", remedy=("restarts",))
def not_converged(ev: Evidence) -> list[dict]:
    rows = []
    for added, base in ev.auxiliary.get("not_converged", []):
        if not (ev.done(added) and ev.done(base)):
            rows.append(row("not_converged", base, "not run", "an attack run is missing"))
            continue
        rows.append(_compare("not_converged", base, added.attack, ev.fooled(added), base.attack,
                             ev.fooled(base, ev.check_samples),
                             f"twice the iterations is stronger ({base.attack} had not converged)"))
    return rows


@CHECKS.register("blackbox_beats_whitebox", "a score-based attack (SquareAttack, 100 queries) stronger than "
                 "the run's gradient attacks at the same eps", cost="costly", remedy=("gradient", "square"))
def blackbox_beats_whitebox(ev: Evidence) -> list[dict]:
    rows = []
    square = {(c.defense, c.eps): c for c, _ in ev.auxiliary.get("blackbox_beats_whitebox", [])}
    for (defense, threat, eps), cells in ev.groups("defense", "threat_model", "eps").items():
        gradient = [c for c in cells if ATTACKS.resolve(c.attack_name)[0].meta["gradient"] and ev.done(c)]
        black = square.get((defense, eps))
        if eps is None or not gradient or black is None:
            continue
        if not cells[0].scored_on_attacked_model:
            rows.append(_not_through_defense("blackbox_beats_whitebox", cells[0], eps))
            continue
        if not ev.done(black):
            rows.append(row("blackbox_beats_whitebox", cells[0], "not run", "its attack run is missing"))
            continue
        union = ev.fooled(gradient[0], ev.check_samples)
        for c in gradient[1:]:
            union = union | ev.fooled(c, ev.check_samples)
        rows.append(_compare("blackbox_beats_whitebox", cells[0], "square", ev.fooled(black),
                             "+".join(c.attack for c in gradient), union,
                             "the black-box attack is stronger than every gradient attack together (masked "
                             "gradients)"))
    return rows


def _worst(results: list[dict]) -> dict:
    order = {"fail": 0, "warn": 1, "pass": 2, "not run": 3}
    return min(results, key=lambda r: order[r["status"]])



@CHECKS.register("silent_success", "images an iterate of the attack fooled that the returned example leaves "
                 "correct (best iterate; Pintor et al. 2022)", cost="cheap")
def silent_success(ev: Evidence) -> list[dict]:
    rows = []
    for cell in ev.cells:
        found, lost = (ev.summaries.get(cell.id, {}).get(k) for k in ("silent_found", "silent_lost"))
        if found is None or found != found:  # absent, or NaN in a table of other cells
            rows.append(row("silent_success", cell, "not run", "the attack's iterates are tracked with the best "
                            "iterate only (PGD/BIM scored on the model it attacks, deterministic defense)"))
            continue
        rows.append(row("silent_success", cell, "fail" if lost else "pass",
                        f"{int(lost)} of the {int(found)} images an iterate fooled are correct on the returned example",
                        f"found {int(found)}, lost {int(lost)}"))
    return rows


@CHECKS.register("inner_optimisation", "the defense computes gradients or runs an optimizer in its forward pass "
                 "(information, not a failure)", cost="cheap", remedy=())
def inner_optimisation(ev: Evidence) -> list[dict]:
    """An 'info' row per defense x threat model whose defense declares ``inner_optimisation`` in its
    registry entry (AutoAttack's flags name such defenses too): the adaptive gradient runs through that
    inner step, a known source of weak gradients (Tramer et al. 2020)."""
    rows = []
    for (_, threat), cells in ev.groups("defense", "threat_model").items():
        name = cells[0].defense_name
        inner = DEFENSES.resolve(name)[0].meta.get("inner_optimisation") if name in DEFENSES else None
        if inner:
            through = "differentiates through" if get_threat_model(threat).gradient == "true" else "skips"
            rows.append(row("inner_optimisation", cells[0], "info", f"the defense's forward pass {inner}; "
                            f"the attack under {threat} {through} that inner step", eps=None))
    return rows


@CHECKS.register("binarization", "active test (Zimmermann et al. 2022): the attack must find an adversarial "
                 "example that provably exists (a binary readout on the features) on >= 95% of the check images",
                 cost="costly", remedy=("gradient", "restarts"))
def binarization(ev: Evidence) -> list[dict]:
    rows = []
    for (_, _, eps), cells in ev.groups("defense", "threat_model", "eps").items():
        gradient = [c for c in cells if ATTACKS.resolve(c.attack_name)[0].meta["gradient"]
                    and ATTACKS.resolve(c.attack_name)[0].meta["budget"]]
        attacks = [c for c in gradient if is_iterative_gradient(c)] or gradient
        if eps is None or not attacks:
            continue
        if not cells[0].scored_on_attacked_model:
            rows.append(_not_through_defense("binarization", cells[0], eps))
            continue
        ctx = ev.context(cells[0])
        if B.last_linear(ctx.classifier.model, ctx.classifier.nb_classes) is None:
            rows.append(row("binarization", cells[0], "not run", "the network has no last linear layer to replace"))
            continue
        found, conclusive = B.found_share(attacks, ctx, ev.check_samples)
        if not conclusive:
            rows.append(row("binarization", cells[0], "not run", "no image where the readout separates its points"))
            continue
        ok = found >= B.MIN_FOUND * conclusive
        rows.append(row("binarization", cells[0], "pass" if ok else "fail",
                        "the attack finds the adversarial examples that exist" if ok else
                        "the attack cannot find adversarial examples that exist",
                        f"found {found} of {conclusive} conclusive images with {'+'.join(c.attack for c in attacks)} "
                        f"(fail below {B.MIN_FOUND:.0%})"))
    return rows
