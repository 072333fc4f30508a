"""hbbench: an adversarial-robustness benchmark on ART, with the Heat-and-Blur defense."""
__version__ = "0.1.0"
