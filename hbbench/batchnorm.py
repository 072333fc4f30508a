"""Fold eval-mode BatchNorm into the convolution before it, for a model that only runs in eval mode.

An attack pays a forward and an input-gradient backward pass per step, and in eval mode a BatchNorm
after a convolution is a per-channel affine map the convolution can absorb: the same function with one
layer less. On EfficientNet-Lite0 (a BatchNorm after each of its 49 convolutions) a PGD step takes
about half the time folded (bench/bench_channels_last.py). The folded model computes the same function
up to float rounding (logits within 2e-5 on the embedded images); tests/test_channels_last.py checks
identical predictions for every registered model it folds.

The convolution and BatchNorm pairs are found in the traced graph (torch.fx), not by module names: a
pair is folded only when the convolution's output feeds that BatchNorm alone and each runs once per
forward. Weights are merged with torch's own ``fuse_conv_bn_weights``; the BatchNorm module is replaced
by what it does besides normalising (timm's ``BatchNormAct2d``: its dropout and activation, so the
activation hooks guided backprop relies on stay in place). A model torch.fx cannot trace keeps its
layers.
"""
from __future__ import annotations

import sys

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


def _foldable_types():
    """Exact types: a subclass may use its weights otherwise (timm's StdConv2d standardises them).
    A model can hold timm's layers only once timm is loaded, so they are looked up, not imported:
    importing timm costs 2 s, which a model without it need not pay."""
    timm_layers = sys.modules.get("timm.layers")
    if timm_layers is None:
        return (nn.Conv2d,), (nn.BatchNorm2d,)
    return (nn.Conv2d, timm_layers.Conv2dSame), (nn.BatchNorm2d, timm_layers.BatchNormAct2d)


class _LeafTracer(torch.fx.Tracer):
    """Keeps convolutions and BatchNorms (timm's included) as single graph nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)


def _what_remains(bn: nn.Module) -> nn.Module:
    if hasattr(bn, "act") and hasattr(bn, "drop"):  # timm's BatchNormAct2d: normalise, drop, act
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(convolution, BatchNorm) qualified names that can be folded: the BatchNorm reads the output of
    that convolution alone, which nothing else reads, and neither module runs twice."""
    conv_types, bn_types = _foldable_types()
    try:
        graph = _LeafTracer().trace(module)
    except Exception:  # control flow on tensor values, unsupported ops: torch.fx raises several types
        return []
    modules = dict(module.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or type(modules[node.target]) not in bn_types or len(node.args) != 1:
            continue
        src = node.args[0]
        if not (isinstance(src, torch.fx.Node) and src.op == "call_module"
                and type(modules[src.target]) in conv_types and len(src.users) == 1):
            continue
        bn = modules[node.target]
        if calls[src.target] == 1 and calls[node.target] == 1 and bn.running_mean is not None:
            pairs.append((src.target, node.target))
    return pairs


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place, every BatchNorm of ``module`` that directly follows a convolution; returns how
    many. ``module`` must stay in eval mode afterwards: training would no longer normalise."""
    if module.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    pairs = _pairs(module)
    for conv_name, bn_name in pairs:
        conv, bn = module.get_submodule(conv_name), module.get_submodule(bn_name)
        requires_grad = conv.weight.requires_grad
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                      bn.eps, bn.weight, bn.bias)
        conv.requires_grad_(requires_grad)
        parent_name, _, attr = bn_name.rpartition(".")
        setattr(module.get_submodule(parent_name), attr, _what_remains(bn))
    return len(pairs)
