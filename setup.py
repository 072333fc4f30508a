"""The package list is found, not written by hand, so a new subpackage cannot be left out of the wheel.

setup.cfg holds everything else. attacks/, defenses/ and metrics/ sit at the top of the repository but
install under the hbbench namespace (setup.cfg's package_dir); setup.cfg's `packages = find:` cannot
rename a top-level folder into a namespace, hence these few lines.
"""
from setuptools import find_packages, setup

NAMESPACED = ("attacks", "defenses", "metrics")

packages = find_packages(include=["hbbench", "hbbench.*"])
for top in NAMESPACED:
    packages += [f"hbbench.{name}" for name in find_packages(include=[top, f"{top}.*"])]

setup(packages=packages)
