"""Shared helpers for the bench scripts: timing (median of several runs) and the embedded setup."""
from __future__ import annotations

import os
import platform
import statistics
import time

import torch


def median_seconds(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {gpu}"


def embedded(n: int = 20, device: str = "auto"):
    """The embedded model as an ART classifier and the first n embedded images."""
    from hbbench.classifier import make_classifier
    from hbbench.datasets import load_dataset

    return make_classifier("efficientnet_lite0", device=device), load_dataset("imagenet-samples", n=n)
