"""Count the forward and backward passes a model runs, per image, where the model runs them.

A forward hook on the network adds the batch size of every forward pass; when that pass's output
takes part in a gradient, a hook on the output adds the batch size once its backward pass runs. So
every way an attack reaches the model (ART's predict/loss_gradient, EoT draws, restarts, a PyTorch
loop of our own) is counted the same, and early stop shows as fewer passes.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class PassCount:
    """Images sent through the network forward, and images whose gradient flowed back through it."""
    forward: int = 0
    backward: int = 0

    def per_image(self, n_images: int) -> tuple[float, float]:
        return (self.forward / n_images, self.backward / n_images) if n_images else (0.0, 0.0)


@contextmanager
def count_passes(model):
    """``with count_passes(net) as count: ...`` then ``count.forward``, ``count.backward``."""
    count = PassCount()

    def on_forward(_module, inputs, output):
        n = int(inputs[0].shape[0]) if inputs and hasattr(inputs[0], "shape") else 1
        count.forward += n
        if getattr(output, "requires_grad", False):
            output.register_hook(lambda grad: _add_backward(count, n))

    handle = model.register_forward_hook(on_forward)
    try:
        yield count
    finally:
        handle.remove()


def _add_backward(count: PassCount, n: int) -> None:
    count.backward += n


COSTS = ("forward_passes_per_image", "backward_passes_per_image", "seconds_per_image")  # summary.csv's


def cost_per_image(shards: list[dict], n_images: int) -> dict:
    """summary.csv's cost columns from a cell's shard records (``forward_passes``, ``backward_passes``,
    ``attack_seconds`` each): per image, what the cell's attack run spent. Cells that share one attack
    run (oblivious) each record that run's figures. Shards stored before passes were counted give NaN."""
    def per_image(key):
        values = [s.get(key) for s in shards]
        return float("nan") if None in values or not n_images else sum(values) / n_images
    return dict(zip(COSTS, (per_image("forward_passes"), per_image("backward_passes"), per_image("attack_seconds"))))


def cost_of_attack_runs(cells, summaries: dict) -> dict:
    """The cost per image of the distinct attack runs behind ``cells`` (summed): cells that share one
    run (every cell crafted against the undefended model) count it once. NaN where a cell's summary
    has no cost (stored before passes were counted)."""
    runs = {c.attack_key: summaries.get(c.id, {}) for c in cells}
    return {k: float(sum(s.get(k, float("nan")) for s in runs.values())) for k in COSTS}
