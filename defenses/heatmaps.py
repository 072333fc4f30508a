"""Relevance heatmaps through captum, with one interface:
``relevance(model, x, targets, ...) -> (N, 1, H, W)`` non-negative maps.

The network is wrapped with its input normalisation, so maps are relevances of the [0, 1] pixels the
user (and ART) sees. Several classes per image are handled in ONE backward pass: the attributed
scalar is the probability-weighted sum of the chosen classes' logits, ``sum_k w_k z_k``. For the
linear-in-the-output-gradient methods (saliency before ``abs``, input x gradient, Grad-CAM's channel
weights) this equals the weighted sum of the per-class maps; for guided backprop it is the guided
gradient of the weighted objective (guided backprop is not linear in the output gradient).

Model hygiene (the model is the user's, shared with the attack): every pass switches in-place
activations off and restores them, captum adds its hooks per call and removes them, and the input is a
detached copy unless double backprop is asked for.
"""
from __future__ import annotations

import contextlib
import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from hbbench.errors import HBBenchError

METHODS = ("guided_backprop", "saliency", "input_x_gradient", "gradcam", "guided_gradcam", "lrp")
# methods whose gradient can be differentiated again (create_graph=True)
DOUBLE_BACKPROP_METHODS = ("guided_backprop", "saliency", "input_x_gradient")

# Activations that get the guided-backprop rule (only positive gradients pass back). captum's own
# GuidedBackprop hooks nn.ReLU only; EfficientNet-Lite uses ReLU6, timm's EfficientNets SiLU.
GUIDED_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish)


def validate_method(method: str) -> str:
    if method not in METHODS:
        raise HBBenchError(f"heatblur method must be one of {', '.join(METHODS)}, got '{method}'")
    return method


class Objective(nn.Module):
    """``(x in [0,1]) -> (N, 1)``: normalise, run the network, return ``sum_k w_k * logit_k``.

    With ``targets``/``weights`` unset (None) the top-``top_k`` classes of this very forward pass are
    used, weighted by their softmax probabilities renormalised to sum 1 (detached: the weights are
    constants for autograd). They are kept in ``last_targets`` / ``last_weights``.
    """

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor, top_k: int = 1):
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.reshape(1, -1, 1, 1), persistent=False)
        self.top_k = top_k
        self.targets: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None
        self.last_targets = self.last_weights = self.last_probs = None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        probs = logits.detach().softmax(dim=1)
        if self.targets is None:
            p, idx = probs.topk(self.top_k, dim=1)
            w = p / p.sum(dim=1, keepdim=True)
        else:
            idx, w = self.targets.to(x.device), self.weights.to(x.device)
        self.last_targets, self.last_weights, self.last_probs = idx, w, probs
        return (logits.gather(1, idx) * w).sum(dim=1, keepdim=True)


@contextlib.contextmanager
def no_inplace(model: nn.Module):
    """Switch ``inplace`` off on every module that has it (backward hooks and double backprop
    cannot work on tensors overwritten in place); restore the flags afterwards, whatever happens."""
    changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in changed:
        m.inplace = False
    try:
        yield
    finally:
        for m in changed:
            m.inplace = True


def _guided_backprop_class():
    from captum._utils.common import _register_backward_hook  # lazy: captum loads only when heatmaps are made
    from captum.attr import GuidedBackprop  # lazy: as above

    class ActivationGuidedBackprop(GuidedBackprop):
        """captum's GuidedBackprop (hooks added per call, removed in ``finally``), extended from
        nn.ReLU to the ReLU family and smooth activations listed in GUIDED_ACTIVATIONS."""

        def _register_hooks(self, module: nn.Module) -> None:
            if isinstance(module, GUIDED_ACTIVATIONS):
                self.backward_hooks.extend(_register_backward_hook(module, self._backward_hook, self))

    return ActivationGuidedBackprop


_LAYER_CACHE: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def last_conv_layer(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """The module whose output is the last spatial (N, C, h, w) feature map with h, w > 1 in execution
    order: for EfficientNet the head's BatchNormAct (conv_head -> bn -> ReLU6), for VGG the last
    feature block. Found once per model with temporary forward hooks (removed before returning)."""
    if net in _LAYER_CACHE:
        return _LAYER_CACHE[net]
    seen: list[nn.Module] = []

    def hook(module, inp, out):
        if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] > 1 and out.shape[-2] > 1:
            seen.append(module)

    handles = [m.register_forward_hook(hook) for m in net.modules() if m is not net
               and not isinstance(m, (nn.Sequential, nn.ModuleList))]
    try:
        with torch.no_grad():
            net(x[:1])
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise HBBenchError("heatblur method gradcam needs a model with a spatial (N,C,H,W) feature map")
    # Pooling layers keep the map but are not the "last conv block"; take the last non-pooling one.
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)
    layer = next((m for m in reversed(seen) if not isinstance(m, pools)), seen[-1])
    _LAYER_CACHE[net] = layer
    return layer


def _upsample(cam: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)


def relevance(model: nn.Module | Objective, x: torch.Tensor, targets: torch.Tensor | None = None,
              weights: torch.Tensor | None = None, *, method: str = "guided_backprop",
              mean=None, std=None, top_k: int = 1, create_graph: bool = False):
    """Non-negative relevance maps ``(N, 1, H, W)`` of ``x`` (pixels in [0, 1]) for the classes
    ``targets`` ((N,) or (N, K) long; None = the model's own top ``top_k``), weighted by ``weights``
    ((N, K); default: equal for given targets). ``model`` is a network taking normalised input (give
    ``mean``/``std``) or an ``Objective``. Returns ``(maps, objective)``; ``objective.last_targets``,
    ``last_weights`` and ``last_probs`` describe the classes used.

    Channel reduction: ``|a|`` summed over colour channels for pixel-space methods; Grad-CAM maps are
    upsampled bilinearly. With ``create_graph=False`` the maps are constants for autograd; with True
    (double backprop, methods in DOUBLE_BACKPROP_METHODS) they stay differentiable w.r.t. ``x``.
    """
    validate_method(method)
    if isinstance(model, Objective):
        obj = model
    else:
        dev = x.device
        mean = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32, device=dev).reshape(-1)
        std = torch.as_tensor(1.0 if std is None else std, dtype=torch.float32, device=dev).reshape(-1)
        obj = Objective(model, mean, std, top_k)
    if targets is not None:
        targets = targets.reshape(len(x), -1).long()
        if weights is None:
            weights = torch.full(targets.shape, 1.0 / targets.shape[1], device=x.device)
        obj.targets, obj.weights = targets, weights.reshape(targets.shape).float()
    else:
        obj.targets = obj.weights = None
    if create_graph and method not in DOUBLE_BACKPROP_METHODS:
        raise HBBenchError(f"heatblur create_graph=True supports methods {', '.join(DOUBLE_BACKPROP_METHODS)}; "
                           f"got method '{method}'")
    with no_inplace(obj.net), warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")  # captum warns on every call that it sets (and removes) hooks
        if create_graph:
            maps = _double_backprop(obj, x, method)
        else:
            maps = _captum(obj, x.detach().clone(), method)
    return maps, obj


def _captum(obj: Objective, x: torch.Tensor, method: str) -> torch.Tensor:
    from captum.attr import LRP, GuidedGradCam, InputXGradient, LayerGradCam, Saliency  # lazy: as above

    if method == "guided_backprop":
        a = _guided_backprop_class()(obj).attribute(x, target=0)
    elif method == "saliency":
        a = Saliency(obj).attribute(x, target=0, abs=True)
    elif method == "input_x_gradient":
        a = InputXGradient(obj).attribute(x, target=0)
    elif method == "gradcam":
        cam = LayerGradCam(obj, last_conv_layer(obj.net, x)).attribute(x, target=0, relu_attributions=True)
        return _upsample(cam, x.shape[-2:]).detach()
    elif method == "guided_gradcam":
        gg = GuidedGradCam(obj, last_conv_layer(obj.net, x))
        gg.guided_backprop = _guided_backprop_class()(obj)
        a = gg.attribute(x, target=0)
    else:  # lrp
        try:
            a = LRP(obj).attribute(x, target=0)
        except (TypeError, AssertionError, RuntimeError) as exc:
            _strip_lrp_state(obj)
            raise HBBenchError(f"heatblur method 'lrp' does not work with this model (captum: "
                               f"{str(exc).splitlines()[0][:160]}); use guided_backprop or gradcam") from None
        finally:
            _strip_lrp_state(obj)
    return a.detach().abs().sum(dim=1, keepdim=True)


def _strip_lrp_state(obj: nn.Module) -> None:
    """captum's LRP leaves ``rule``/``activations`` attributes on layers: remove them."""
    for m in obj.modules():
        for attr in ("rule", "activations"):
            if attr in m.__dict__:
                delattr(m, attr)


def _double_backprop(obj: Objective, x: torch.Tensor, method: str) -> torch.Tensor:
    """Gradient maps kept in the autograd graph (create_graph=True). Guided backprop reuses captum's
    hook registration (added here, removed in ``finally``)."""
    xin = x if x.requires_grad else x.detach().clone().requires_grad_(True)
    gbp = _guided_backprop_class()(obj) if method == "guided_backprop" else None
    try:
        if gbp is not None:
            obj.apply(gbp._register_hooks)
        out = obj(xin)
        (g,) = torch.autograd.grad(out.sum(), xin, create_graph=True)
    finally:
        if gbp is not None:
            gbp._remove_hooks()
    a = g * xin if method == "input_x_gradient" else g
    return a.abs().sum(dim=1, keepdim=True)
