"""Build ART ``PyTorchClassifier`` objects the same way everywhere: normalisation as ART
``preprocessing``, pixels in [0, 1], eval mode, parameters frozen."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from hbbench.batchnorm import fold_batchnorm
from hbbench.errors import HBBenchError
from hbbench.models import LoadedModel, load_model


@lru_cache(maxsize=1)
def _classifier_class():
    class Float32Classifier(PyTorchClassifier):
        """ART's PyTorchClassifier, casting inputs to float32: some ART attacks (HopSkipJump) hand it
        float64 arrays, which a float32 model can't take.

        ``eot_draws`` > 1 makes every gradient the mean over that many independent passes through the
        preprocessing defenses (Expectation over Transformation): each pass draws a randomized
        defense anew. ART's own EoTPyTorch is not used: it runs the transform image by image and
        returns N x K predictions, which breaks attacks that read predictions (C&W's success check)."""

        eot_draws = 1

        def predict(self, x, batch_size: int = 128, training_mode: bool = False, **kwargs):
            return super().predict(np.asarray(x, np.float32), batch_size=batch_size, training_mode=training_mode,
                                   **kwargs)

        def loss_gradient(self, x, y, **kwargs):
            return _mean_of_draws(lambda: super(Float32Classifier, self).loss_gradient(x, y, **kwargs),
                                  self.eot_draws)

        def class_gradient(self, x, label=None, **kwargs):
            return _mean_of_draws(lambda: super(Float32Classifier, self).class_gradient(x, label, **kwargs),
                                  self.eot_draws)

    return Float32Classifier


def _mean_of_draws(gradient, draws: int):
    total = gradient()
    for _ in range(draws - 1):
        total = total + gradient()
    return total / draws if draws > 1 else total


# Models run in channels-last memory format on CPU: those for which bench/bench_channels_last.py
# measured a forward plus input-gradient backward (a PGD step) at most 0.9x the NCHW time, both as the
# median of per-round ratios and as the ratio of medians, with the same predictions (figures in
# bench/README.md): a model whose registry name starts with one of these (timm's EfficientNets as a
# family, measured on b0; torchvision's ResNet-50 and VGG-19 as measured, not their families). Other
# models, and every model on CUDA (not measured), keep NCHW.
CHANNELS_LAST = ("efficientnet_lite0", "timm:efficientnet", "torchvision:resnet50", "torchvision:vgg19")


def channels_last(name: str, device_type: str) -> bool:
    """Whether model ``name`` runs in channels-last memory format on ``device_type`` ('cpu' or 'gpu')."""
    return device_type == "cpu" and name.startswith(CHANNELS_LAST)


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA when present; returns ART's device_type ('gpu' or 'cpu')."""
    if device not in ("auto", "cpu", "cuda"):
        raise HBBenchError(f"device must be auto, cpu or cuda, got '{device}'")
    if device == "cuda" and not torch.cuda.is_available():
        raise HBBenchError("--device cuda was asked for but no CUDA device is available")
    return "gpu" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"


def make_classifier(model: str | nn.Module | LoadedModel = "efficientnet_lite0",
                    defenses: Sequence = (), device: str = "auto", *,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    num_classes: int | None = None, input_shape=(3, 224, 224)):
    """Wrap a model as an ART ``PyTorchClassifier``.

    ``model`` is a registry name, a ``LoadedModel``, or a plain ``nn.Module`` (then give ``mean``,
    ``std`` and, if it has no ``num_classes`` attribute, ``num_classes``). ``defenses`` are ART
    preprocessors applied, in order, to [0, 1] pixels before the normalisation. The model is put in
    eval mode with its parameters frozen: attacks need input gradients only, and freezing roughly
    halves ART's backward pass. A registry model (a name or a ``LoadedModel``) has its BatchNorms folded
    into the convolutions before them, in place (``hbbench.batchnorm``: the same function, about half
    the time per attack step; the module must then stay in eval mode), and one listed in
    ``CHANNELS_LAST`` is switched, in place, to channels-last memory format on CPU. A plain
    ``nn.Module`` is used as given.
    """
    if isinstance(model, str):
        model = load_model(model)
    device_type = resolve_device(device)
    if isinstance(model, LoadedModel):
        mean, std = mean or model.mean, std or model.std
        num_classes, input_shape, module = num_classes or model.num_classes, model.input_size, model.module
    else:
        module = model
        mean, std = mean or (0.0, 0.0, 0.0), std or (1.0, 1.0, 1.0)
        num_classes = num_classes or getattr(module, "num_classes", None)
        if num_classes is None:
            raise HBBenchError("make_classifier needs num_classes for a plain nn.Module")
    module.eval().requires_grad_(False)
    if isinstance(model, LoadedModel):
        fold_batchnorm(module)
    if isinstance(model, LoadedModel) and channels_last(model.name, device_type):
        module.to(memory_format=torch.channels_last)  # in place: the inputs follow the weights' format
    shape = (len(mean), 1, 1)
    return _classifier_class()(
        model=module,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(input_shape),
        nb_classes=int(num_classes),
        clip_values=(0.0, 1.0),
        preprocessing=(np.asarray(mean, np.float32).reshape(shape), np.asarray(std, np.float32).reshape(shape)),
        preprocessing_defences=list(defenses) or None,
        device_type=device_type,
    )


def with_defenses(classifier, defenses: Sequence, eot_draws: int = 1):
    """A classifier sharing ``classifier``'s model and normalisation, with ``defenses`` in front; its
    gradients average ``eot_draws`` passes through them (EoT)."""
    pre = classifier.preprocessing
    clf = _classifier_class()(
        model=classifier.model,
        loss=nn.CrossEntropyLoss(),
        input_shape=classifier.input_shape,
        nb_classes=classifier.nb_classes,
        clip_values=classifier.clip_values,
        preprocessing=(pre.mean, pre.std),
        preprocessing_defences=list(defenses) or None,
        device_type="gpu" if classifier.device.type == "cuda" else "cpu",
    )
    clf.eot_draws = int(eot_draws)
    return clf


def with_loss(classifier, loss: nn.Module):
    """``classifier`` (model, normalisation, defenses, EoT draws) with another loss, which takes the logits
    and one-hot labels (ART passes labels through unreduced for a loss it does not know)."""
    pre = classifier.preprocessing
    clf = _classifier_class()(
        model=classifier.model, loss=loss, input_shape=classifier.input_shape, nb_classes=classifier.nb_classes,
        clip_values=classifier.clip_values, preprocessing=(pre.mean, pre.std),
        preprocessing_defences=classifier.preprocessing_defences,
        device_type="gpu" if classifier.device.type == "cuda" else "cpu",
    )
    clf.eot_draws = classifier.eot_draws
    return clf


def predict_probs(classifier, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities: the models return logits, every metric and figure wants probabilities."""
    logits = classifier.predict(x, batch_size=batch_size)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def require_pytorch_path(attack: str, estimator) -> None:
    """Attacks written in PyTorch (hbbench's C&W and AutoAttack) differentiate through the classifier's
    preprocessing themselves: they need an ART PyTorchClassifier whose every preprocessor is PyTorch."""
    if not isinstance(estimator, PyTorchClassifier):
        raise TypeError(f"{attack} needs an ART PyTorchClassifier, got {type(estimator).__name__}")
    if not estimator.all_framework_preprocessing:
        raise ValueError(
            f"{attack} differentiates through the classifier's preprocessing in PyTorch, but this classifier has "
            "NumPy-only preprocessing/defences; use PyTorch preprocessors, or wrap the defence in a "
            "straight-through (BPDA) PyTorch preprocessor")
