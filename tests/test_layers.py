"""hbbench's modules form layers (README.md, "Layers"; the import-linter contract in setup.cfg), no module
hides an import in a function to dodge them (cli.py's per-command imports excepted), and importing
hbbench changes nothing in a third-party library."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from art.attacks.evasion.projected_gradient_descent import projected_gradient_descent_pytorch as art_pgd
from art.utils import compute_success

ROOT = Path(__file__).resolve().parents[1]
INSTALLED_AS = {"hbbench": "hbbench", "attacks": "hbbench/attacks", "defenses": "hbbench/defenses",
                "metrics": "hbbench/metrics"}  # setup.cfg's package_dir: the layout a wheel installs
MAX_IMPORTS_IN_FUNCTIONS = 25


def _staged(tmp_path: Path) -> Path:
    """The package as a wheel lays it out (import-linter reads one folder per package)."""
    for folder, target in INSTALLED_AS.items():
        shutil.copytree(ROOT / folder, tmp_path / target, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _lint(staged: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), str(ROOT / "setup.cfg"), "--no-cache"], cwd=staged, capture_output=True,
                          text=True, env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_the_layers_contract_is_kept(tmp_path):
    result = _lint(_staged(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_layers_contract_catches_an_upward_import(tmp_path):
    staged = _staged(tmp_path)
    probes = staged / "hbbench" / "probes.py"
    probes.write_text(probes.read_text() + "\nfrom hbbench import runner  # noqa: E402,F401\n")
    result = _lint(staged)
    assert result.returncode != 0
    assert "hbbench.probes -> hbbench.runner" in result.stdout


def _imports_in_functions() -> list[tuple[str, int, str, str]]:
    """(file, line, source, module) of every import statement inside a function or an
    ``if TYPE_CHECKING:`` block (anything not at a module's top level), third-party ones included."""
    found = []
    for folder in INSTALLED_AS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset > 0:
                    module = node.names[0].name if isinstance(node, ast.Import) else node.module or ""
                    found.append((str(path.relative_to(ROOT)), node.lineno, text.splitlines()[node.lineno - 1],
                                  module))
    return found


def test_imports_inside_functions_are_few_and_each_says_why():
    found = _imports_in_functions()
    assert len(found) <= MAX_IMPORTS_IN_FUNCTIONS, found
    assert all("# lazy" in source for _, _, source, _ in found), [f for f in found if "# lazy" not in f[2]]
    # hbbench's own modules are imported inside a function only by the CLI's commands (a fast start) and
    # by the report's one figure that runs the model (a report is drawn without torch and ART)
    own = {(file, module) for file, _, _, module in found if module == "hbbench" or module.startswith("hbbench.")}
    assert {file for file, _ in own} == {"hbbench/cli.py", "hbbench/report/examples.py"}, own


def test_importing_hbbench_leaves_art_as_art_defines_it():
    import hbbench.api  # noqa: F401  (everything the sweep imports)
    from hbbench.attacks import TRANSFER, make_attack
    from hbbench.attacks.early_stop import EarlyStopPGD
    from hbbench.classifier import make_classifier

    assert art_pgd.compute_success is compute_success
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    clf = make_classifier(net, device="cpu", mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=3, input_shape=(3, 2, 2))
    x = np.random.default_rng(0).random((4, 3, 2, 2), dtype=np.float32)
    attack = make_attack("pgd", clf, eps=0.1, max_iter=2, **TRANSFER)
    assert isinstance(attack, EarlyStopPGD)  # hbbench's own PGD subclass
    adv = attack.generate(x)
    assert np.abs(adv - x).max() <= 0.1 + 1e-6
    assert art_pgd.compute_success is compute_success  # skipped inside that call only, restored after
