"""The paired test behind every "A is stronger than B" check.

Two attacks (or settings) are run on the same images; an image is *discordant* when one fools the
defended model and the other does not. Under "equally strong" each discordant image is a fair coin,
so the number of images only A fools is Binomial(discordant, 1/2): an exact one-sided sign test
(McNemar's exact test). A 20-image run needs 5 of 5 discordant images on one side to reach
p < 0.05, so small runs raise no false alarm from one or two flips; a 200-image run catches a
difference of a few percent."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

ALPHA = 0.05  # a check fails when the stronger side is significant at this level


@dataclass(frozen=True)
class Paired:
    only_a: int  # images A fools and B does not
    only_b: int
    n: int
    p_value: float  # one-sided: A fools more images than B

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    def numbers(self) -> str:
        return f"only A {self.only_a}, only B {self.only_b} of {self.n}; sign test p={self.p_value:.3g}"


def a_stronger_than_b(fooled_a, fooled_b) -> Paired:
    """Sign test of "A fools more images than B" on paired per-image outcomes (True = fooled)."""
    a, b = np.asarray(fooled_a, bool), np.asarray(fooled_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length: {a.shape} vs {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    p = binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue if only_a + only_b else 1.0
    return Paired(only_a, only_b, int(a.size), float(p))
