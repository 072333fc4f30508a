"""`hbbench report` of a model grid: built from a small real two-model run; the header names both models,
a comparison table and scatter come first, then each model's sections show that model's rows only, with
their own anchors and figure files. A one-model report has no comparison."""
import re
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from hbbench.api import sweep
from hbbench.report import build_report
from hbbench.report.data import model_slugs
from hbbench.spec import SweepSpec
from tests.conftest import TINY_MODEL, TINY_PLUGIN

EMBEDDED = TINY_MODEL  # the model the images are labelled by (tests/conftest.py: tiny_data); other_tiny is right on none


class Page(HTMLParser):
    """Headings (level, id, text), table ids, and the td attributes each under the h2 it follows."""

    def __init__(self, path):
        super().__init__(convert_charrefs=True)
        self.headings, self.tables, self.tds, self.title = [], [], [], ""
        self._heading = self._in_title = None
        self.h2 = ""
        self.feed(Path(path).read_text())
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = [int(tag[1]), a.get("id"), ""]
        elif tag == "table":
            self.tables.append(a.get("id"))
        elif tag == "td":
            self.tds.append((self.h2, a))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        if self._heading is not None and re.fullmatch(r"h[1-6]", tag):
            self.headings.append(tuple(self._heading))
            if self._heading[0] == 2:
                self.h2 = self._heading[2]
            self._heading = None
        self._in_title = False

    def handle_data(self, data):
        if self._heading is not None:
            self._heading[2] += data
        if self._in_title:
            self.title += data


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, other_tiny, tiny_data):
    out = tmp_path_factory.mktemp("results")
    spec = SweepSpec(models=[EMBEDDED, other_tiny], attacks=["fgsm"], defenses=["jpeg"], dataset=tiny_data,
                     plugins=[TINY_PLUGIN], threat_models=["oblivious", "bpda"], n=3, batch_size=3, device="cpu")
    sweep(spec, out=out, run="models", command="hbbench sweep --model two (test)")
    return out / "models"


@pytest.fixture(scope="module")
def report(run_dir):
    return build_report(run_dir, examples=False)


@pytest.fixture(scope="module")
def summary(run_dir):
    return pd.read_csv(run_dir / "summary.csv")


def test_names_every_model(report, other_tiny):
    html_path, md_path = report
    page = Page(html_path)
    h1 = [text for level, _, text in page.headings if level == 1]
    for model in (EMBEDDED, other_tiny):
        assert model in page.title and model in h1[0] and model in md_path.read_text()
    assert [text for level, _, text in page.headings if level == 2 and text.startswith("Model: ")] == \
        [f"Model: {EMBEDDED}", f"Model: {other_tiny}"]
    assert "## Models compared" in md_path.read_text()


def test_only_the_random_weights_model_is_unverified_and_first(report, other_tiny):
    md = report[1].read_text()
    blocks = [b for b in md.split("\n\n") if b.strip()]
    assert blocks[1].startswith(f"> unverified: the model {other_tiny} does not classify these images "
                                "(clean top-1 0.00 on 3 images)")  # under the title, above all else
    embedded = md[md.index(f"## Model: {EMBEDDED}"):md.index(f"## Model: {other_tiny}")]
    random = md[md.index(f"## Model: {other_tiny}"):]
    assert "does not classify" not in embedded and "model_sanity | none | all | — | pass" not in embedded
    assert random.count("unverified: the model does not classify") >= 2 * 2  # worst-case rows and verdicts
    compared = md[md.index("## Models compared"):md.index("## Model: ")].splitlines()
    rows = [line for line in compared if line.startswith("| ") and "|---" not in line][1:]
    assert len(rows) == 2 * 2 * 2  # models x defenses x threat models
    for line in rows:  # the verdict column: every row of the random model, none of the embedded one's
        assert line.endswith("dataset's class indices |") == line.startswith(f"| {other_tiny} |"), line


def _expected(summary, model, defense, threat) -> tuple[pd.Series, str]:
    """The summary row the comparison shows: the worst case at the largest budget that has one, else the
    lowest attack at its largest budget (this run has one attack at one budget)."""
    rows = summary[(summary.model == model) & (summary.defense == defense) & (summary.threat_model == threat)]
    worst = rows[rows.attack == "worst_case"]
    if not worst.empty:
        return worst[worst.eps == worst.eps.max()].iloc[0], "worst case"
    cells = rows[rows.attack != "worst_case"]
    return cells.loc[cells.defended_adv_top1.idxmin()], "lowest attack: fgsm ε=4/255"


def test_comparison_has_one_row_per_model_defense_and_threat_with_summary_numbers(report, summary, other_tiny):
    page = Page(report[0])
    shown = [a for h2, a in page.tds if h2 == "Models compared" and "data-model" in a]
    keys = [(a["data-model"], a["data-defense"], a["data-threat"]) for a in shown]
    assert keys == [(m, d, t) for m in (EMBEDDED, other_tiny) for d in ("none", "jpeg")
                    for t in ("oblivious", "bpda")]
    ats = set()
    for (model, defense, threat), a in zip(keys, shown):
        row, at = _expected(summary, model, defense, threat)
        assert float(a["data-robust"]) == row.defended_adv_top1  # summary.csv's numbers, not recomputed
        assert float(a["data-clean"]) == row.clean_top1
        assert float(a["data-defended-clean"]) == row.defended_clean_top1
        ats.add(at)
    # bpda's worst case counts the oblivious attack too; oblivious, with one attack, falls back to it
    assert ats == {"worst case", "lowest attack: fgsm ε=4/255"}
    md = report[1].read_text()
    assert "worst case, ε=4/255" in md and "lowest attack: fgsm ε=4/255" in md


def test_each_models_sections_show_only_its_rows(report, summary, other_tiny):
    page = Page(report[0])
    cells = summary[summary.attack != "worst_case"]
    worst = summary[summary.attack == "worst_case"]
    for model in (EMBEDDED, other_tiny):
        section = [a for h2, a in page.tds if h2 == f"Model: {model}"]
        assert {a["data-cell-id"] for a in section if "data-cell-id" in a} == set(cells[cells.model == model].cell_id)
        mine = worst[worst.model == model]
        assert sorted((a["data-defense"], a["data-threat"], float(a["data-worst-top1"]))
                      for a in section if "data-worst-top1" in a) == \
            sorted(zip(mine.defense, mine.threat_model, mine.defended_adv_top1))
    # the sections sit one level below their model's heading
    levels = {text: level for level, _, text in page.headings}
    assert levels["Robustness curves"] == 3 and levels["Threat model: oblivious"] == 4


def test_scatter_exists_and_differs_from_each_models_own(run_dir, report):
    files = run_dir / "report_files"
    compared = (files / "models_compared.png").read_bytes()
    assert compared[:8] == b"\x89PNG\r\n\x1a\n"
    own = sorted(files.glob("model-*--clean_vs_robust.png"))
    assert len(own) == 2 and all(p.read_bytes() != compared for p in own)
    assert "report_files/models_compared.png" in report[1].read_text()


def test_figure_names_anchors_and_table_ids_are_unique(run_dir, report, other_tiny):
    page = Page(report[0])
    anchors = [aid for _, aid, _ in page.headings if aid]
    assert not [a for a, k in Counter(anchors).items() if k > 1]
    assert not [t for t, k in Counter(filter(None, page.tables)).items() if k > 1]
    links = re.findall(r"\]\(report_files/([^)]+)\)", report[1].read_text())
    assert len(links) == len(set(links)) == len(list((run_dir / "report_files").glob("*.png")))
    slugs = model_slugs([EMBEDDED, other_tiny])
    for slug in slugs.values():  # each model's anchors and figures carry its own slug
        assert f"model-{slug}--curves" in anchors and f"model-{slug}--curves_top1.png" in links


def test_model_slugs_are_distinct_and_safe():
    labels = ["torchvision:resnet18[weights=a.pt]", "torchvision:resnet18[weights=A.pt]", "x" * 60, "x" * 61]
    slugs = model_slugs(labels)
    assert len(set(slugs.values())) == 4
    assert all(re.fullmatch(r"[a-z0-9_.-]{1,43}", s) and "--" not in s for s in slugs.values())


def test_one_model_report_has_no_comparison(tmp_path, tiny_data):
    spec = SweepSpec(models=[EMBEDDED], attacks=["fgsm"], defenses=["jpeg"], n=2, batch_size=2, dataset=tiny_data,
                     plugins=[TINY_PLUGIN], device="cpu")
    sweep(spec, out=tmp_path, run="one")
    html_path, md_path = build_report(tmp_path / "one", examples=False)
    page = Page(html_path)
    assert "Models compared" not in [text for _, _, text in page.headings]
    assert not any("data-model" in a for _, a in page.tds)
    assert EMBEDDED in page.title and not [text for _, _, text in page.headings if text.startswith("Model: ")]
    assert (2, "curves", "Robustness curves") in page.headings  # sections at their usual level and anchor
    assert not (tmp_path / "one" / "report_files" / "models_compared.png").exists()


def test_examples_render_for_each_model_on_its_own_model(run_dir, tmp_path, other_tiny):
    """Each model's examples are drawn from that model's stored examples and records."""
    copy = tmp_path / "models"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report*"))
    html_path, md_path = build_report(copy, examples=True)
    text = md_path.read_text()
    assert "could not be drawn" not in text
    for slug in model_slugs([EMBEDDED, other_tiny]).values():
        assert (copy / "report_files" / f"model-{slug}--examples.png").is_file()
    assert text.count("nothing is attacked again") == 2
