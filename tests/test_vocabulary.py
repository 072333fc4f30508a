"""One meaning per word (issue 30): verified / repaired / unverified say whether a number can be trusted
(the evaluation); the report's defense outcomes use other words ("helps against an attacker who sees
it", "helps only obliviously", "no gain"); "holds", once used both ways, is gone. A sweep whose remedies
run prints one final line per setting and a progress count that never passes its total."""
from __future__ import annotations

import re
import pandas as pd

from hbbench import schema
from hbbench.grid import resolve
from hbbench.options import SweepOptions
from hbbench.progress import run_with_progress
from hbbench.report import build_report
from tests.conftest import small_budgets

EVALUATION = ("verified", "repaired", "unverified")


def test_failed_then_repaired_setting_says_each_word_once_and_progress_adds_up(tmp_path, tiny, planted_defense,
                                                                               capsys):
    """On the tiny CNN with the planted rounding defense (tests/conftest.py) and small budgets."""
    spec = dict(tiny, n=4, attacks=["fgsm", "pgd[max_iter=5]"], defenses=[planted_defense],
                threat_models=["oblivious", "adaptive"])
    run_with_progress(resolve(spec), SweepOptions(out=tmp_path, run="r", checks="full", check_samples=2,
                                                  check_budgets=small_budgets(), save_examples=0))
    out, err = capsys.readouterr()
    table = pd.read_csv(tmp_path / "r" / "summary.csv")
    worst = table[(table.attack == "worst_case") & (table.defense == planted_defense)
                  & (table.threat_model == "adaptive")]
    assert len(worst) == 1 and worst.verdict.iloc[0].startswith("repaired after zero_gradient"), worst.verdict

    # one final line per setting: the worst-case line, and no "unverified:" line from before the remedies
    mine = [line for line in out.splitlines() if f"{planted_defense} under adaptive" in line]
    assert len(mine) == 1 and mine[0].startswith(f"worst case {planted_defense} under adaptive"), mine
    assert re.search(r" — repaired after zero_gradient[a-z_, ]* failed: \d\.\d\d → \d\.\d\d by \S+ \(bpda\)$",
                     mine[0]), mine[0]

    # progress that adds up: the total grows by the remedy cells, never passed, no negative time left
    assert re.search(r"^\+\d+ remedy cells", err, re.M), err
    counts = [tuple(map(int, m)) for m in re.findall(r"^\[(\d+)/(\d+)\]", err, re.M)]
    assert counts and all(done <= total for done, total in counts), counts
    assert counts[-1][0] == counts[-1][1] > counts[0][1]  # the last line closes the grown total
    assert "about -" not in err

    # no word both ways: "holds" nowhere; the defense outcomes never use the evaluation's words
    _, md_path = build_report(tmp_path / "r", examples=False)
    md = md_path.read_text()
    for text in (md, out):
        assert not re.search(r"\bholds\b", text, re.I), [s for s in text.splitlines() if "holds" in s.lower()]
    head = "## Which defenses help"
    outcomes = md[md.index(head):md.index("\n## ", md.index(head) + 1)]
    sentences = [line for line in outcomes.splitlines() if line.startswith(f"{planted_defense}: ")]
    assert sentences, outcomes
    for line in sentences:
        assert not any(re.search(rf"\b{w}\b", line, re.I) for w in EVALUATION), line
    assert "repaired after zero_gradient" in md  # the evaluation's word, in the worst-case table


def test_an_older_runs_holds_reads_as_verified():
    old = pd.DataFrame({"attack": ["worst_case", "worst_case", "fgsm"],
                        "verdict": ["holds", "repaired: 0.81 → 0.06 by apgd_dlr (bpda) (zero_gradient failed)", None]})
    got = schema.summary(old)
    assert list(got.verdict[:2]) == ["verified", old.verdict[1]] and pd.isna(got.verdict[2])
    from hbbench.leaderboard import VERIFIED

    assert all(v.startswith(VERIFIED) for v in got.verdict[:2])
