"""Factories of ART's own preprocessing defenses, TotalVarMin in PyTorch beside ART's, and a plain
Gaussian blur (the ablation Heat-and-Blur must beat); they are registered in defenses/__init__.py."""
from __future__ import annotations

from art.defences.preprocessor import FeatureSqueezing, GaussianAugmentation, JpegCompression, SpatialSmoothingPyTorch

from hbbench.defenses.blur import GaussianBlur
from hbbench.defenses.tvm import TotalVarMinART, TotalVarMinPyTorch, validate_params
from hbbench.errors import HBBenchError


def _device_type(classifier) -> str:
    return "gpu" if classifier.device.type == "cuda" else "cpu"


def no_defense(classifier):
    return None


def median(classifier, window_size: int = 3):
    if window_size < 1:
        raise HBBenchError(f"median window_size must be >= 1, got {window_size}")
    return SpatialSmoothingPyTorch(window_size=int(window_size), channels_first=True,
                                   clip_values=classifier.clip_values, device_type=_device_type(classifier))


def jpeg(classifier, quality: int = 75):
    if not 1 <= quality <= 95:
        raise HBBenchError(f"jpeg quality must be in 1..95, got {quality}")
    return JpegCompression(clip_values=classifier.clip_values, quality=int(quality), channels_first=True)


def squeeze(classifier, bit_depth: int = 5):
    if not 1 <= bit_depth <= 64:
        raise HBBenchError(f"squeeze bit_depth must be in 1..64, got {bit_depth}")
    return FeatureSqueezing(clip_values=classifier.clip_values, bit_depth=int(bit_depth))


def tvm(classifier, prob: float = 0.3, lamb: float = 0.5, max_iter: int = 10, norm: int = 2):
    return TotalVarMinPyTorch(prob=prob, norm=norm, lamb=lamb, max_iter=max_iter,
                              clip_values=classifier.clip_values, device_type=_device_type(classifier))


def tvm_art(classifier, prob: float = 0.3, lamb: float = 0.5, max_iter: int = 10, norm: int = 2):
    validate_params("tvm_art", prob, lamb, max_iter, norm)
    return TotalVarMinART(prob=float(prob), norm=int(norm), lamb=float(lamb), max_iter=int(max_iter),
                          clip_values=classifier.clip_values)


def noise(classifier, sigma: float = 0.05):
    if sigma <= 0:
        raise HBBenchError(f"noise sigma must be > 0, got {sigma}")
    return GaussianAugmentation(sigma=float(sigma), augmentation=False, apply_fit=False, apply_predict=True,
                                clip_values=classifier.clip_values)


def blur(classifier, sigma: float = 2.0):
    if sigma <= 0:
        raise HBBenchError(f"blur sigma must be > 0, got {sigma}")
    return GaussianBlur(sigma, device_type=_device_type(classifier))
