import os
import subprocess
import sys

import pytest

from hbbench.errors import HBBenchError
from hbbench.grid import expand
from hbbench.parsing import parse_budget, parse_budgets, parse_item
from hbbench.spec import SweepSpec


def test_budgets_accept_fractions_and_lists():
    assert parse_budgets("2/255,4/255") == (2 / 255, 4 / 255)
    assert parse_budget("0.01") == 0.01


@pytest.mark.parametrize("bad", ["4/0", "-1", "abc", "0", "nan", "inf", ""])
def test_malformed_budgets_are_refused(bad):
    with pytest.raises(HBBenchError, match="budget"):
        parse_budgets(bad)


def test_items_take_parameters():
    assert parse_item("jpeg[quality=50]") == ("jpeg", {"quality": 50})
    assert parse_item("pgd[eps=8/255,max_iter=20]") == ("pgd", {"eps": 8 / 255, "max_iter": 20})
    with pytest.raises(HBBenchError):
        parse_item("jpeg[quality]")


def test_grid_includes_none_and_runs_unbudgeted_attacks_once():
    spec = SweepSpec(attacks=["fgsm", "cw"], defenses=["jpeg"], eps=["2/255", "4/255"])
    spec.validate()
    cells = expand(spec)
    fgsm = [c for c in cells if c.attack == "fgsm"]
    cw = [c for c in cells if c.attack == "cw"]
    assert len(fgsm) == 2 * 2 * 2 and len(cw) == 2 * 2
    assert {c.defense for c in cells} == {"none", "jpeg"}
    assert all(c.eps is None for c in cw)
    assert len({c.id for c in cells}) == len(cells)


def test_oblivious_cells_share_one_attack_run():
    spec = SweepSpec(attacks=["pgd"], defenses=["jpeg", "median"])
    spec.validate()
    from hbbench.runner import group_cells

    groups = group_cells(expand(spec))
    # undefended target (none x both threats + every defense oblivious), then one per defense under bpda
    assert sorted(len(g) for g in groups) == [1, 1, 4]


def test_unknown_defense_parameter_is_named():
    spec = SweepSpec(defenses=["jpeg[qualty=5]"])
    spec.validate()
    with pytest.raises(HBBenchError, match="qualty"):
        expand(spec)


def test_cell_ids_are_stable_across_processes():
    """One other process, with a string hash seed of its own (this one's is random), names the cell as this one does."""
    code = "from hbbench.grid import expand; from hbbench.spec import SweepSpec; s=SweepSpec(); s.validate(); print(expand(s)[3].id)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    spec = SweepSpec()
    spec.validate()
    assert other == expand(spec)[3].id + "\n"


def test_yaml_spec_rejects_unknown_keys_and_wrong_types(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("attacks: [fgsm]\nepsilon: 4/255\n")
    with pytest.raises(HBBenchError, match="epsilon"):
        SweepSpec.from_yaml(p)
    p.write_text("attacks: [fgsm]\nn: many\n")
    with pytest.raises(HBBenchError, match="n must be an integer"):
        SweepSpec.from_yaml(p)
