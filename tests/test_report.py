"""`hbbench report`: built from a copy of the session's tiny run (tests/conftest.py); HTML parses and is self-
contained, tables agree with summary.csv, user strings are escaped, and the page renders in headless
Chromium without console errors."""
import base64
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from hbbench.report import build_report

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()),
                shutil.which("chromium") or shutil.which("chromium-browser"))


class Page(HTMLParser):
    """Collects tags, <img> sources, main-table cells and visible text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.imgs, self.cells, self.text = [], [], [], []
        self._td = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "img":
            self.imgs.append(a)
        if tag == "td" and "data-cell-id" in a:
            self._td = {"attrs": a, "text": ""}

    def handle_endtag(self, tag):
        if tag == "td" and self._td is not None:
            self.cells.append(self._td)
            self._td = None

    def handle_data(self, data):
        self.text.append(data)
        if self._td is not None:
            self._td["text"] += data


def parse(path) -> Page:
    page = Page()
    page.feed(Path(path).read_text())
    page.close()
    return page


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_run):
    """A copy of the session's tiny run: fgsm and PGD-3 x none/jpeg x 2/255, 4/255 x oblivious/bpda on 2
    images (the report writes into the run)."""
    run = tmp_path_factory.mktemp("results") / "tiny"
    shutil.copytree(tiny_run, run)
    return run


@pytest.fixture(scope="module")
def report(run_dir):
    return build_report(run_dir, examples=True)


def test_writes_html_md_and_pngs(run_dir, report):
    html_path, md_path = report
    assert html_path == run_dir / "report.html" and md_path == run_dir / "report.md"
    md = md_path.read_text()
    pngs = sorted((run_dir / "report_files").glob("*.png"))
    assert {p.name for p in pngs} >= {"curves_top1.png", "curves_ndcg.png", "clean_vs_robust.png",
                                      "rank_shift.png", "examples.png"}
    for p in pngs:
        assert f"report_files/{p.name}" in md
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    command = json.loads((run_dir / "manifest.json").read_text())["command"]  # the command that made the run
    for word in ("oblivious", "bpda", "jpeg", "fgsm", "pgd[max_iter=3]", command):
        assert word in md


def test_html_parses_and_every_image_is_an_embedded_png(report):
    page = parse(report[0])
    assert page.imgs, "the report has no plots"
    for img in page.imgs:
        src = img["src"]
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert img.get("alt")
    # self-contained: nothing is loaded from anywhere, and there is no script at all
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe")
        for key in ("src", "href"):
            assert not str(attrs.get(key, "")).startswith(("http:", "https:", "//", "file:")), (tag, attrs)


def test_main_table_equals_summary_csv(run_dir, report):
    summary = pd.read_csv(run_dir / "summary.csv")
    summary = summary[summary.attack != "worst_case"].set_index("cell_id")
    cells = parse(report[0]).cells
    shown = {c["attrs"]["data-cell-id"] for c in cells}
    assert shown == set(summary.index)  # every cell once, under its threat model's table
    for c in cells:
        row = summary.loc[c["attrs"]["data-cell-id"]]
        assert c["attrs"]["data-threat"] == row.threat_model and c["attrs"]["data-defense"] == row.defense
        assert float(c["attrs"]["data-top1"]) == row.defended_adv_top1  # read from summary.csv, not recomputed
        assert float(c["attrs"]["data-ndcg"]) == row.ndcg
        text = c["text"]
        assert f"top-1 {row.defended_adv_top1:.3f}" in text
        assert f"[{row.defended_adv_top1_ci_low:.2f}, {row.defended_adv_top1_ci_high:.2f}]" in text
        assert f"NDCG {row.ndcg:.3f}" in text
        assert f"[{row.ndcg_ci_low:.2f}, {row.ndcg_ci_high:.2f}]" in text


def test_worst_case_table_equals_summary_csv_and_names_the_checks(run_dir, report):
    summary = pd.read_csv(run_dir / "summary.csv")
    worst = summary[summary.attack == "worst_case"]
    assert len(worst) == 2 * 2 * 2  # {none, jpeg} x {oblivious, bpda} x two budgets
    page = parse(report[0])
    shown = sorted((a["data-defense"], a["data-threat"], float(a["data-worst-top1"]))
                   for tag, a in page.tags if tag == "td" and "data-worst-top1" in a)
    assert shown == sorted(zip(worst.defense, worst.threat_model, worst.defended_adv_top1))
    text = " ".join(page.text)
    assert "Evaluation checks:" in text and ("checks pass" in text or "unverified (" in text)


def test_clean_cost_and_verdicts_come_from_the_numbers(run_dir, report):
    summary = pd.read_csv(run_dir / "summary.csv")
    summary = summary[summary.attack != "worst_case"]
    page = parse(report[0])
    tds = [a for tag, a in page.tags if tag == "td"]
    clean = [float(a["data-clean-top1"]) for a in tds if "data-clean-top1" in a]
    defended = {a["data-defense"]: float(a["data-defended-clean-top1"]) for a in tds if "data-defended-clean-top1" in a}
    ndcg = [float(a["data-defended-clean-ndcg"]) for a in tds if "data-defended-clean-ndcg" in a]
    assert list(defended) == ["none", "jpeg"] and len(clean) == len(ndcg) == 2
    for d, clean_top1, defended_top1, defended_ndcg in zip(defended, clean, defended.values(), ndcg):
        row = summary[summary.defense == d].iloc[0]
        assert (clean_top1, defended_top1, defended_ndcg) == \
            (row.clean_top1, row.defended_clean_top1, row.defended_clean_ndcg)
    text = " ".join(page.text)
    assert "Threat model: oblivious" in text and "Threat model: bpda" in text
    jpeg_obl = summary[(summary.defense == "jpeg") & (summary.threat_model == "oblivious")].defended_adv_top1.mean()
    assert f"jpeg: adversarial top-1 {jpeg_obl:.2f} on average" in text


def test_examples_are_drawn_from_the_stored_examples(report):
    """The panels show the adversarial examples the sweep stored (issue 29): nothing is attacked again."""
    text = " ".join(parse(report[0]).text)
    assert re.search(r"2 images \(clean model right, attack succeeds first, among the 2 whose adversarial examples "
                     r"the run stored\)", text)
    assert "nothing is attacked again" in text


def test_each_html_id_names_one_element(report, tmp_path):
    """The checks heading and the failed-checks table once shared the id "checks"; Doc now refuses a
    second element with an id, so any report that builds has none twice."""
    import collections
    import re

    from hbbench.report.document import Doc

    ids = re.findall(r'\sid="([^"]+)"', Path(report[0]).read_text())
    assert ids and not [i for i, k in collections.Counter(ids).items() if k > 1]
    doc = Doc(tmp_path / "files")
    doc.heading(2, "Checks", "checks")
    with pytest.raises(ValueError, match="given twice"):
        doc.table(["a"], [["1"]], table_id="checks")


def test_report_imports_no_attack_code():
    code = "import hbbench.report, sys; print([m for m in sys.modules if m.startswith('hbbench.attacks')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_user_strings_are_escaped(run_dir, tmp_path):
    evil = tmp_path / "run<script>x</script>"
    shutil.copytree(run_dir, evil, ignore=shutil.ignore_patterns("report*"))
    manifest = json.loads((evil / "manifest.json").read_text())
    manifest["command"] = "hbbench sweep --model '<script>alert(1)</script>' \"&<img src=x onerror=alert(2)>"
    manifest["spec"]["model_params"] = {"weights": "<b>bold</b>.pt"}
    (evil / "manifest.json").write_text(json.dumps(manifest))
    html_path, md_path = build_report(evil, examples=False)
    raw = html_path.read_text()
    assert "<script>" not in raw and "<img src=x" not in raw and "<b>bold</b>" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    page = parse(html_path)
    assert not any(tag == "script" for tag, _ in page.tags)
    assert all("onerror" not in attrs for _, attrs in page.tags)
    assert manifest["command"] in " ".join(page.text)  # shown to the reader exactly as typed
    assert manifest["command"] in md_path.read_text()  # inside a code fence in the Markdown


def test_cli_reports_newest_run_and_fails_in_one_line_without_one(run_dir, tmp_path):
    from click.testing import CliRunner

    from hbbench.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["report", "--out", str(run_dir.parent), "--no-examples"])
    assert res.exit_code == 0, res.output
    assert "report.html" in res.output
    assert "skipped (--no-examples)" in (run_dir / "report.html").read_text()
    res = runner.invoke(main, ["report", "--out", str(tmp_path / "nothing")])
    assert res.exit_code == 2
    assert res.output.strip().startswith("error: no run under") and len(res.output.strip().splitlines()) == 1
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({"spec": {}, "status": "running"}))
    res = runner.invoke(main, ["report", str(empty)])
    assert res.exit_code == 2 and "no summary.csv" in res.output


def _chromium(html_path: Path, shot: Path, profile: Path, height: int) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--screenshot={shot}", f"--window-size=1280,{height}",
           "--hide-scrollbars", "--enable-logging=stderr", "--v=0", html_path.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_renders_in_headless_chromium_without_console_errors(run_dir, report, tmp_path):
    from PIL import Image, ImageStat

    shot = tmp_path / "shot.png"
    proc = _chromium(report[0], shot, tmp_path / "profile", 2000)
    assert shot.is_file(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # no script errors, no loads blocked by the page's CSP (nothing external)
    with Image.open(shot) as im:
        gray = im.convert("L")
        assert gray.size == (1280, 2000)
        assert ImageStat.Stat(gray).var[0] > 100  # not a blank page
        # most of the first screen is white page, some of it text: a laid-out page, not a raw dump
        hist = gray.histogram()
        assert 0.5 < sum(hist[250:]) / (1280 * 2000) < 0.995

    # the whole page, tall enough to hold the plots: they render (the Okabe-Ito colours show up)
    tall = tmp_path / "tall.png"
    proc = _chromium(report[0], tall, tmp_path / "profile2", 9000)
    assert tall.is_file(), proc.stderr[-2000:]
    with Image.open(tall) as im:
        saturated = sum(im.convert("HSV").getchannel("S").histogram()[100:])
    assert saturated > 20000, saturated


def test_the_cost_table_shows_the_passes_each_attack_run_spent(run_dir, report):
    summary = pd.read_csv(run_dir / "summary.csv")
    pgd = summary[summary.attack == "pgd[max_iter=3]"]
    oblivious = pgd[pgd.threat_model == "oblivious"]  # feeds oblivious cells: no early stop
    assert set(oblivious.backward_passes_per_image) == {3.0} and set(oblivious.forward_passes_per_image) == {3.0}
    assert (pgd.backward_passes_per_image <= 3).all()  # JPEG under BPDA stops early on fooled images
    html, md = report[0].read_text(), report[1].read_text()
    assert 'data-backward-passes="3.0"' in html and 'data-backward-passes="1.0"' in html  # pgd-3, fgsm
    assert "| forward passes / image | backward passes / image |" in md
