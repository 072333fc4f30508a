"""Defenses: ART's preprocessing baselines, a plain blur, and Heat-and-Blur, in one registry.

Every defense hbbench ships is registered here, in one place: a factory takes the undefended ART
classifier first and returns an ART preprocessor (None for `none`)."""
from hbbench.defenses import baselines, heatblur
from hbbench.defenses.registry import DEFENSES
from hbbench.defenses.threat import StraightThrough, attacker_preprocessors, is_differentiable

__all__ = ["DEFENSES", "StraightThrough", "attacker_preprocessors", "is_differentiable", "make_defense"]

_register = DEFENSES.register
_register("none", "no defense: the baseline every table includes")(baselines.no_defense)
_register("median", "ART SpatialSmoothingPyTorch: median filter over a window")(baselines.median)
_register("jpeg", "ART JpegCompression at a JPEG quality (1-95)")(baselines.jpeg)
_register("squeeze", "ART FeatureSqueezing: reduce colour bit depth")(baselines.squeeze)
_register("tvm", "TotalVarMin in PyTorch (ART's algorithm, batched, differentiable): total-variance "
          "minimisation of randomly kept pixels", inner_optimisation="runs an optimizer (total-variation "
          "minimisation by L-BFGS, unrolled under autograd)")(baselines.tvm)
_register("tvm_art", "ART TotalVarMin (SciPy L-BFGS-B per image and channel, CPU): the reference for tvm",
          inner_optimisation="runs an optimizer (SciPy L-BFGS-B)")(
    baselines.tvm_art)
_register("noise", "ART GaussianAugmentation at prediction: add Gaussian noise of std sigma")(baselines.noise)
_register("blur", "plain Gaussian blur of std sigma pixels (kornia; the same blur as Heat-and-Blur's)")(baselines.blur)
_register("heatblur", "Heat-and-Blur (Brama & Grinshpoun 2020): relevance heatmap of the top-k classes (captum) "
          "guides massive Gaussian blurring before the network classifies",
          inner_optimisation="computes gradients (the relevance heatmap's attribution)")(heatblur.heatblur)


def make_defense(name: str, classifier, **params):
    """Create the registered defense ``name`` for ``classifier`` (an undefended ART classifier);
    returns an ART preprocessor, or None for ``none``."""
    return DEFENSES.create(name, classifier, **params)
