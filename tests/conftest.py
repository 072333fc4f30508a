import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(max(1, os.cpu_count() or 1))

SHARED_200 = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "imagenet-samples-200")


@pytest.fixture(scope="session")
def model():
    from hbbench.models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def second_model():
    """A second model for model grids: torchvision's resnet18 with random weights, on purpose (no download);
    its outputs are not uniform (a random-weights mobilenet's are)."""
    return "torchvision:resnet18[weights=random]"


@pytest.fixture(scope="session")
def classifier(model):
    from hbbench.classifier import make_classifier

    return make_classifier(model, device="cpu")


@pytest.fixture(scope="session")
def data4():
    """The first four embedded ImageNet images (the model gets three right)."""
    from hbbench.datasets import load_dataset

    return load_dataset("imagenet-samples", n=4)


def top1(classifier, x, y) -> float:
    return float((classifier.predict(x).argmax(1) == y).mean())


@pytest.fixture
def rng():
    return np.random.default_rng(0)
