"""An example hbbench plugin: a user's own model, built from its architecture and a checkpoint (a
state dict), or untrained on purpose, registered as `tiny_cnn` (docs/plugins.md walks through it).

    hbbench sweep --plugin examples/tiny_cnn.py --model "efficientnet_lite0,tiny_cnn[weights=random]"
    python examples/tiny_cnn.py tiny_cnn.pt          # writes a checkpoint (random weights) for weights=PATH
    hbbench sweep --plugin examples/tiny_cnn.py --model "tiny_cnn[weights=tiny_cnn.pt]"
"""
import sys

import torch
from torch import nn

from hbbench.errors import HBBenchError
from hbbench.models import MODELS, LoadedModel


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 5, stride=4), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2),
                                      nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@MODELS.register("tiny_cnn", "example plugin: a small CNN for ImageNet inputs of 224 px (or size=N px), from "
                 "a state dict (weights=PATH) or untrained (weights=random)")
def tiny_cnn(weights: str = "tiny_cnn.pt", size: int = 224) -> LoadedModel:
    # Its pooling takes any size; hbbench checks that a dataset's images are the size the model declares.
    if size < 16:
        raise HBBenchError(f"tiny_cnn: size must be at least 16 px (two strided convolutions), got {size}")
    if weights == "random":  # an untrained network, on purpose: seeded, so every worker builds the same one
        with torch.random.fork_rng():
            torch.manual_seed(0)
            module = TinyCNN()
    else:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)  # tensors only: no code runs
        except FileNotFoundError:
            raise HBBenchError(f"tiny_cnn: no checkpoint at {weights} (python examples/tiny_cnn.py {weights} "
                               "writes one; weights=random builds an untrained network)") from None
        module = TinyCNN()
        module.load_state_dict(state)
    # The inputs hbbench passes are images in [0, 1]; the model normalises with these, inside the classifier.
    # Its 1000 outputs are ImageNet's classes in timm's order: a dataset of another class set is refused.
    return LoadedModel("tiny_cnn", module.eval(), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                       num_classes=1000, input_size=(3, size, size), classes="imagenet-1k")


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.save(TinyCNN().state_dict(), sys.argv[1] if len(sys.argv) > 1 else "tiny_cnn.pt")
