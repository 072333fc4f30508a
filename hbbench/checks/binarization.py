"""The binarization test of Zimmermann et al. 2022 (*Increasing Confidence in Adversarial Robustness
Evaluations*, arXiv 2206.13991): an active test that the attack finds adversarial examples that
provably exist. hbbench's own version of the procedure, per defense x threat model x eps, on the check
images (docs/evaluation.md, "The binarization test"):

1. Features: the input of the network's last linear layer, on the defended input (the defense applied
   as at prediction).
2. ``INNER`` points drawn uniformly inside the L-inf eps-ball around the clean image and one point on its
   boundary (a random corner, x + eps * sign(u)); all clipped to the pixel range.
3. A binary linear readout on those features (logistic regression): the clean image and the inner
   points are class 0, the boundary point class 1. An image is *conclusive* when the readout, put in
   place of the last layer, classifies every one of these points as fitted: then an adversarial example
   (the boundary point) provably exists inside the ball.
4. The grid's iterative gradient attacks at that eps (its gradient attacks when it has none), under the
   cell's threat model, attack the clean image on the binary model; an image counts as found when one
   of them reaches class 1 on the defended binary model.
5. Pass: found on at least ``MIN_FOUND`` of the conclusive images.

Computed in process at check time (each image has its own model, so no cell can hold it), once per
setting per process.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from hbbench.attacks import make_attack
from hbbench.classifier import make_classifier, resolve_device, with_defenses
from hbbench.defenses import attacker_preprocessors
from hbbench.execution import Context, apply_defense, make_cell_defense, seed_everything
from hbbench.threats import get_threat_model

INNER = 31  # points inside the ball (the reference samples hundreds; 31 + clean + boundary is one batch)
MIN_FOUND = 0.95  # the bar, after the paper: a working attack finds the example on (nearly) every image
_DONE: dict[tuple, tuple[int, int]] = {}


class Binary(nn.Module):
    """``module`` with its last linear layer ``head`` replaced by a readout ``w.f + b`` (logits [-s/2, s/2])."""

    def __init__(self, module: nn.Module, head: nn.Linear, w: np.ndarray, b: float):
        super().__init__()
        self.module, self.head = module, head
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32))
        self.b = float(b)

    def forward(self, x):
        return self.readout(features(self.module, self.head, x))

    def readout(self, f: torch.Tensor) -> torch.Tensor:
        score = f @ self.w.to(f.device) + self.b
        return torch.stack([-score / 2, score / 2], 1)


def features(module: nn.Module, head: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    found = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: found.append(inputs[0]))
    try:
        module(x)
    finally:
        hook.remove()
    return found[0].flatten(1)


def last_linear(module: nn.Module, num_classes: int) -> nn.Linear | None:
    heads = [m for m in module.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    return heads[-1] if heads else None


def found_share(cells, ctx: Context, n_images: int) -> tuple[int, int]:
    """(images where an attack found the example, conclusive images) for one setting's cells (same
    defense, threat model and eps)."""
    first = cells[0]
    # what the test computes: an attack that ignores the defense is the same computation under every
    # threat model (the undefended model's cells under oblivious and bpda), so it runs once
    target = first.attack_target if first.crafts_against_defense else (first.defense,)
    key = (first.model_key, target, first.eps, tuple((c.attack_name, c.attack_params) for c in cells), n_images)
    if key in _DONE:
        return _DONE[key]
    base = ctx.classifier
    head = last_linear(base.model, base.nb_classes)
    pre = base.preprocessing
    mean, std = tuple(np.ravel(pre.mean)), tuple(np.ravel(pre.std))
    defense = make_cell_defense(first, base)
    eot = get_threat_model(first.threat_model).eot
    found = conclusive = 0
    for i in range(n_images):
        seed_everything(first.seed, "binarization", first.defense, first.eps, i)
        x = ctx.dataset.images([i])
        inner = x + np.random.uniform(-first.eps, first.eps, (INNER,) + x.shape[1:]).astype(np.float32)
        corner = x + first.eps * np.sign(np.random.uniform(-1, 1, x.shape)).astype(np.float32)
        points = np.clip(np.concatenate([x, inner, corner]), 0, 1).astype(np.float32)
        labels = np.r_[np.zeros(INNER + 1, int), 1]
        with torch.no_grad():
            defended = torch.from_numpy((apply_defense(defense, points, len(points)) - pre.mean) / pre.std)
            f = features(base.model, head, defended.float().to(base.device))
        fit = LogisticRegression(C=1e4, class_weight="balanced", max_iter=2000).fit(f.cpu().numpy(), labels)
        network = Binary(base.model, head, fit.coef_[0], fit.intercept_[0])
        with torch.no_grad():  # the binary model on the defended points: its readout on the features just computed
            separated = np.array_equal(network.readout(f).argmax(1).cpu().numpy(), labels)
        if not separated:
            continue  # the readout does not separate them: no example provably exists
        conclusive += 1
        binary = make_classifier(network, device=ctx.device, mean=mean, std=std, num_classes=2,
                                 input_shape=base.input_shape)
        defend = lambda z: apply_defense(defense, z, len(z))  # noqa: E731
        attacked_defense = defense if first.crafts_against_defense else None
        attacker_pre, _ = attacker_preprocessors(attacked_defense, first.threat_model, resolve_device(ctx.device))
        attacked = with_defenses(binary, attacker_pre, eot_draws=eot) if attacker_pre else binary
        for cell in cells:
            params = {**dict(cell.attack_params), "eps": cell.eps, "batch_size": 1}
            x_adv = make_attack(cell.attack_name, attacked, **params).generate(x, y=np.zeros(1, int))
            if binary.predict(defend(x_adv.astype(np.float32))).argmax(1)[0] == 1:
                found += 1
                break
    _DONE[key] = (found, conclusive)
    return _DONE[key]
