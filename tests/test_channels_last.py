"""Channels-last memory format (hbbench.classifier.CHANNELS_LAST) and BatchNorm folding
(hbbench.batchnorm): the models make_classifier switches and folds predict the same classes as the
model as loaded on the embedded images."""
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


# BatchNorms each model has after a convolution (VGG-19 has none)
FOLDED = {"efficientnet_lite0": 49, "timm:efficientnet_b0[weights=random]": 49,
          "torchvision:resnet50[weights=random]": 53, "torchvision:vgg19[weights=random]": 0}


# the large torchvision networks (VGG-19, ResNet-50: seconds each on 2 cores) run in the slow tier
LARGE = {"torchvision:resnet50[weights=random]", "torchvision:vgg19[weights=random]"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n
                                  for n in sorted(SWITCHING.values())])
def test_channels_last_and_folded_predict_as_loaded(name):
    ds = load_dataset("imagenet-samples", n=4)  # the layout is per image: 4 show it as well as 20
    torch.manual_seed(0)
    loaded = load_model(name)
    reference = copy.deepcopy(loaded.module).eval()
    clf = make_classifier(loaded, device="cpu")
    first_conv = next(m for m in clf.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in reference.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in clf.model.modules()) == batchnorms - FOLDED[name]
    mean, std = torch.tensor(loaded.mean).view(1, 3, 1, 1), torch.tensor(loaded.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((torch.from_numpy(ds.x) - mean) / std).argmax(1).numpy()
    np.testing.assert_array_equal(clf.predict(ds.x).argmax(1), expected)


def test_other_models_and_cuda_keep_nchw():
    assert not channels_last("torchvision:vgg16", "cpu") and not channels_last("torchvision:resnet18", "cpu")
    assert not channels_last("efficientnet_lite0", "gpu")


def test_folding_keeps_the_function_and_its_input_gradient():
    """A folded model is the same function: logits and input gradients within float rounding, on a model
    whose BatchNorms hold trained-like statistics (random ones would make folding nearly a no-op)."""
    from hbbench.batchnorm import fold_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3, bias=False), torch.nn.BatchNorm2d(4),
                              torch.nn.Flatten(), torch.nn.LazyLinear(5))
    net(torch.rand(2, 3, 12, 12))
    for bn in (net[1], net[4]):
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    net.eval()
    folded = copy.deepcopy(net)
    assert fold_batchnorm(folded) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(4, 3, 12, 12, requires_grad=True)
    grads = [torch.autograd.grad(m(x).logsumexp(1).sum(), x)[0] for m in (net, folded)]
    torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_folding_refuses_a_training_model_and_leaves_a_shared_convolution():
    from hbbench.batchnorm import fold_batchnorm

    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.BatchNorm2d(3)))

    class Twice(torch.nn.Module):  # the convolution's output feeds the BatchNorm and the sum
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 3, 1), torch.nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    assert fold_batchnorm(Twice().eval()) == 0
