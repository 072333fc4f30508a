"""Channels-last memory format (hbbench.classifier.CHANNELS_LAST): the models that switch predict the
same classes as in NCHW on the embedded images."""
import copy

import numpy as np
import pytest
import torch

from hbbench.classifier import CHANNELS_LAST, channels_last, make_classifier
from hbbench.datasets import load_dataset
from hbbench.models import load_model

# one concrete model for every entry (an entry may name a family); random weights where none ship
SWITCHING = {"efficientnet_lite0": "efficientnet_lite0", "timm:efficientnet": "timm:efficientnet_b0[weights=random]",
             "torchvision:resnet50": "torchvision:resnet50[weights=random]",
             "torchvision:vgg19": "torchvision:vgg19[weights=random]"}


def test_every_switching_entry_has_a_model_tested():
    assert set(SWITCHING) == set(CHANNELS_LAST)


@pytest.mark.parametrize("name", sorted(SWITCHING.values()))
def test_channels_last_predicts_as_nchw(name):
    ds = load_dataset("imagenet-samples")
    torch.manual_seed(0)
    loaded = load_model(name)
    reference = copy.deepcopy(loaded.module).eval()
    clf = make_classifier(loaded, device="cpu")
    first_conv = next(m for m in clf.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    mean, std = torch.tensor(loaded.mean).view(1, 3, 1, 1), torch.tensor(loaded.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((torch.from_numpy(ds.x) - mean) / std).argmax(1).numpy()
    np.testing.assert_array_equal(clf.predict(ds.x).argmax(1), expected)


def test_other_models_and_cuda_keep_nchw():
    assert not channels_last("torchvision:vgg16", "cpu") and not channels_last("torchvision:resnet18", "cpu")
    assert not channels_last("efficientnet_lite0", "gpu")
