"""Plugins: a user's defense (examples/bitdepth_median.py) in the grid from the command line, on every
executor, beside a user's model (examples/tiny_cnn.py, the fast tier's model); the manifest records
both; a changed plugin is refused on resume; installed packages' plugins come through the entry-point
group. Fresh processes (the commands reading a plugin run, the entry point, the worker pool, Ray) are
the slow tier; the same commands run in-process in the fast one."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hbbench.api import sweep
from hbbench.cli import main
from hbbench.errors import HBBenchError
from hbbench.spec import SweepSpec
from tests.conftest import TINY_PLUGIN, cli_runner

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bitdepth_median.py"
GRID = ["--attacks", "fgsm", "--defense", "bitdepth_median,jpeg", "--threat", "oblivious,bpda", "--n", "2",
        "--shard-size", "1", "--batch-size", "2", "--device", "cpu", "--threads", "1", "--checks", "none"]


def _sweep_cli(out: Path, tiny_flags, *extra) -> pd.DataFrame:
    result = cli_runner().invoke(main, ["sweep", *tiny_flags, "--plugin", str(EXAMPLE), *GRID, "--out", str(out),
                                        "--run", "r", *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    table = pd.read_csv(out / "r" / "summary.csv")
    return table[[c for c in table.columns if not c.endswith("_seconds") and c != "seconds_per_image"]]


@pytest.fixture(scope="module")
def local(tmp_path_factory, tiny_flags):
    out = tmp_path_factory.mktemp("local")
    return _sweep_cli(out, tiny_flags), out / "r"


def test_the_plugins_defense_is_in_the_grid(local):
    table, _ = local
    assert set(table.defense) == {"none", "bitdepth_median", "jpeg"}
    bitmed = table[(table.defense == "bitdepth_median") & (table.threat_model == "bpda")]
    assert bitmed.attack_gradient.iloc[0].startswith("identity (BPDA")  # a PyTorch preprocessor, wrapped for BPDA


def test_the_manifest_records_the_plugin_and_its_hash(local):
    import hashlib

    _, run_dir = local
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["spec"]["plugins"] == [TINY_PLUGIN, str(EXAMPLE)]
    assert {"plugin": str(EXAMPLE), "kind": "file",
            "sha256": hashlib.sha256(EXAMPLE.read_text().encode()).hexdigest()} in manifest["plugins"]


def test_verify_reads_a_plugin_runs_grid(local):
    from hbbench.integrity import OK
    from hbbench.verification import verify_run

    _, run_dir = local
    _, findings = verify_run(run_dir)
    assert {f.status for f in findings} == {OK} and len(findings) > 1


COMMANDS = [["verify"], ["check", "--checks", "default"], ["report", "--no-examples"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_read_a_plugin_run(local, tmp_path, command):
    """The same commands in-process (the fast tier's version of the test below)."""
    import shutil

    run_dir = tmp_path / "r"
    shutil.copytree(local[1], run_dir)
    result = cli_runner().invoke(main, [command[0], str(run_dir), *command[1:]])
    _read_cleanly(command, result.exit_code, result.stdout, result.stderr)


def _read_cleanly(command, code: int, stdout: str, stderr: str):
    """The command read the plugin run: exit 0, no error or damage, and verify finds every file ok."""
    assert code == 0, stdout + stderr
    assert "Traceback" not in stderr and "error" not in stderr and "damaged" not in stdout
    if command[0] == "verify":
        statuses = {line.split()[0] for line in stdout.splitlines()[1:-1]}
        assert statuses == {"ok"}, stdout


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_commands_read_a_plugin_run_in_a_new_process(local, tmp_path, command):
    """A new process has none of the run's plugins loaded: each command must load them (from the
    manifest) before it expands the grid. verify once did not, and called the manifest damaged."""
    import shutil

    run_dir = tmp_path / "r"
    shutil.copytree(local[1], run_dir)  # check and report write into the run
    done = subprocess.run([sys.executable, "-m", "hbbench.cli", command[0], str(run_dir), *command[1:]],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    _read_cleanly(command, done.returncode, done.stdout, done.stderr)


@pytest.mark.slow
def test_worker_pool_matches_local(local, tmp_path, tiny_flags):
    table, _ = local
    pd.testing.assert_frame_equal(_sweep_cli(tmp_path, tiny_flags, "--workers", "2"), table)


@pytest.mark.slow
def test_ray_matches_local(local, tmp_path, tiny_flags):
    """Ray started for the sweep (none running) loads the plugins in its workers, and is shut down after."""
    ray = pytest.importorskip("ray")
    table, _ = local
    pd.testing.assert_frame_equal(_sweep_cli(tmp_path, tiny_flags, "--executor", "ray", "--workers", "2"), table)
    assert not ray.is_initialized()


def _tiny(plugin: Path, plugins=(), **kw) -> SweepSpec:
    return SweepSpec(attacks=["fgsm"], defenses=["mine"], threat_models=["oblivious"], n=1,
                     plugins=[*plugins, str(plugin)], **kw)


def _model(tiny: dict) -> dict:
    """The tiny CNN (its plugin first) on its images."""
    return {k: tiny[k] for k in ("models", "plugins", "dataset", "device")}


def test_resuming_with_a_changed_plugin_is_refused(tmp_path, tiny):
    plugin = tmp_path / "mine.py"
    plugin.write_text(EXAMPLE.read_text().replace('"bitdepth_median"', '"mine"'))  # its own name in this process
    sweep(_tiny(plugin, **_model(tiny)), out=tmp_path, run="r", checks="none")
    before = json.loads((tmp_path / "r" / "manifest.json").read_text())
    plugin.write_text(plugin.read_text().replace("bits: int = 4", "bits: int = 3"))
    with pytest.raises(HBBenchError, match=r"other plugins \(.*mine.py changed \(sha256"):
        sweep(_tiny(plugin, **_model(tiny)), out=tmp_path, run="r", checks="none")
    # the refusal came before any work: the run still holds what the first plugin made
    assert json.loads((tmp_path / "r" / "manifest.json").read_text()) == before


def test_yaml_plugins_key_is_read_relative_to_where_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = tmp_path / "spec.yaml"
    config.write_text("plugins: [examples/bitdepth_median.py]\ndefenses: [bitdepth_median]\n")
    spec = SweepSpec.from_yaml(config)
    assert spec.plugins == [str(EXAMPLE)]  # absolute: a resumed run finds it from anywhere


def test_an_installed_packages_entry_point_plugin_is_listed_in_process(tmp_path, monkeypatch):
    """The entry-point group read in this process (the fast tier's version of the test below)."""
    site = _entry_point_package(tmp_path, "demo_in_process")
    monkeypatch.syspath_prepend(str(site))
    import importlib

    importlib.invalidate_caches()
    result = cli_runner().invoke(main, ["list", "defenses"])
    try:
        assert result.exit_code == 0, result.stderr
        assert "demo_in_process" in result.stdout and "(plugin hbdemo_plugin)" in result.stdout
    finally:
        from hbbench.plugins import unload

        unload("hbdemo_plugin")
        sys.modules.pop("hbdemo_plugin", None)


def _entry_point_package(tmp_path: Path, name: str) -> Path:
    site = tmp_path / "site"
    (site / "hbdemo_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "hbdemo_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: hbdemo-plugin\n"
                                                                  "Version: 0.1\n")
    (site / "hbdemo_plugin-0.1.dist-info" / "entry_points.txt").write_text("[hbbench.plugins]\ndemo = hbdemo_plugin\n")
    (site / "hbdemo_plugin.py").write_text(EXAMPLE.read_text().replace('"bitdepth_median"', f'"{name}"'))
    return site


@pytest.mark.slow
def test_an_installed_packages_entry_point_plugin_is_listed(tmp_path):
    """A package declaring `[hbbench.plugins]` in its entry points is picked up without --plugin."""
    site = _entry_point_package(tmp_path, "demo_installed")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-m", "hbbench.cli", "list", "defenses"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "demo_installed" in out.stdout and "(plugin hbdemo_plugin)" in out.stdout


def test_the_report_draws_examples_with_the_plugins_defense(local):
    from hbbench.report import build_report

    _, run_dir = local
    _, md = build_report(run_dir, examples=True)
    text = md.read_text()
    assert "could not be drawn" not in text and "examples.png" in text
