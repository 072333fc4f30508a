"""hbbench installs like any other package: the sdist is built from the repository, the wheel from the
unpacked sdist (as `python -m build` does), and the wheel is installed, not editable, into a fresh
virtual environment. The commands then run from that environment, so a subpackage missing from the
wheel (hbbench.report once was) fails here, while the editable install the other tests use hides it.

The fresh environment reuses this interpreter's installed dependencies through a .pth file naming its
site-packages directories: the .pth files inside those directories are not processed, so an editable
hbbench installed there does not leak in, and the test checks where hbbench is imported from.
"""
from __future__ import annotations

import os
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
ENV.pop("PYTHONPATH", None)


def _run(argv, cwd, timeout=600):
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def _dependency_dirs() -> list[str]:
    """This interpreter's site-packages directories, those a .pth added included."""
    dirs = [p for p in sys.path if p.rstrip("/").endswith("site-packages")]
    dirs += [p for p in site.getsitepackages() if p not in dirs]
    return dirs


@pytest.mark.slow
def test_wheel_and_sdist_install_and_run(tmp_path):
    dist = tmp_path / "dist"
    # sdist through setuptools' PEP 517 hook (the `build` front end need not be installed)
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"],
         cwd=ROOT)
    (sdist,) = dist.glob("hbbench-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (src,) = (tmp_path / "src").iterdir()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, "."],
         cwd=src)
    (wheel,) = dist.glob("hbbench-*.whl")
    shipped = {Path(name).parent.as_posix() for name in zipfile.ZipFile(wheel).namelist()}
    for package in ("hbbench", "hbbench/checks", "hbbench/report", "hbbench/attacks", "hbbench/defenses",
                    "hbbench/metrics"):
        assert package in shipped, f"{package} missing from the wheel"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python, hbbench = venv / "bin" / "python", venv / "bin" / "hbbench"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path).stdout.strip())
    (purelib / "reused_dependencies.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=tmp_path)
    where = _run([python, "-c", "import hbbench, hbbench.report; print(hbbench.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv), f"hbbench imported from {where.stdout}"

    out = tmp_path / "results"
    _run([hbbench, "sweep", "--n", "2", "--attacks", "fgsm", "--defense", "jpeg", "--threat", "oblivious",
          "--run", "r", "--out", out], cwd=tmp_path)
    _run([hbbench, "report", out / "r"], cwd=tmp_path)
    assert (out / "r" / "report.html").is_file()
    verified = _run([hbbench, "verify", out / "r"], cwd=tmp_path)
    assert "error" not in verified.stderr.lower()
