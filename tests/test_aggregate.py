"""summary.csv as written from cell summaries: the column contract of results/README.md, grid order,
foreign cells left out, and the compact Markdown/LaTeX views; `describe` gives each row its identity."""
import pytest

from hbbench.aggregate import COLUMNS, EXTRA, latex, markdown, summary_table
from hbbench.runner import describe
from hbbench.grid import expand
from hbbench.spec import SweepSpec


def _summary(cell, top1):
    row = {k: 0.0 for k in COLUMNS + EXTRA}
    row.update(describe(cell), defended_adv_top1=top1, attack_gradient="none", n=2)
    return row


@pytest.fixture
def cells():
    return expand(SweepSpec.from_dict(dict(attacks=["fgsm", "cw"], defenses=["jpeg[quality=50]"],
                                    threat_models=["oblivious", "bpda"], eps="2/255,4/255")))


def test_rows_follow_the_grid_and_drop_cells_of_other_grids(cells):
    summaries = [_summary(c, i / 100) for i, c in enumerate(cells)]
    stray = dict(summaries[0], cell_id="not-in-this-grid")
    df = summary_table(list(reversed(summaries)) + [stray], order=[c.id for c in cells])
    assert list(df.cell_id) == [c.id for c in cells]
    assert list(df.columns[:len(COLUMNS + EXTRA)]) == COLUMNS + EXTRA


def test_describe_names_every_dimension_of_the_cell(cells):
    rows = [describe(c) for c in cells]
    assert {(r["attack"], r["norm"]) for r in rows} == {("fgsm", "inf"), ("cw", "2")}
    assert {r["eps"] for r in rows if r["attack"] == "cw"} == {None}  # cw takes no budget: one row per defense
    assert {r["defense"] for r in rows} == {"none", "jpeg[quality=50]"}
    assert all(r["dataset"] == "imagenet-samples" and r["model"] == "efficientnet_lite0" for r in rows)
    assert len({r["cell_id"] for r in rows}) == len(rows) == 2 * 2 * 2 + 2 * 2


def test_markdown_and_latex_show_budgets_as_fractions_of_255(cells):
    df = summary_table([_summary(c, 0.5) for c in cells[:3]])
    md, tex = markdown(df), latex(df)
    assert "| fgsm | 2/255 | none | oblivious |" in md and "0.500" in md
    assert "2/255" in tex and "\\toprule" in tex


def test_an_empty_run_has_the_header_only():
    df = summary_table([])
    assert df.empty and list(df.columns) == COLUMNS + EXTRA
    assert markdown(df).strip().count("\n") == 1  # header and rule, no row
