"""hbbench.explain: the Heat-and-Blur figure is written as a PNG with the expected panels."""
import pytest
from PIL import Image

from hbbench.errors import HBBenchError
from hbbench.explain import explain, panels_per_row


def test_explain_writes_png_with_all_panels(tmp_path):
    out = tmp_path / "sub" / "explain.png"
    fig = explain(0, dataset="imagenet-samples", out=out, attack_iters=2, top_k=2, dpi=60)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        w, h = im.size
    assert 600 <= w <= 4000 and 200 <= h <= 2000 and w > h
    assert len(fig.axes) == 2 * panels_per_row(2) == 16


def test_explain_bad_input(tmp_path):
    with pytest.raises(HBBenchError, match="out of range"):
        explain(10_000, dataset="imagenet-samples", out=tmp_path / "x.png")
    with pytest.raises(HBBenchError, match="not found"):
        explain(str(tmp_path / "missing.jpg"), out=tmp_path / "x.png")
    with pytest.raises(HBBenchError, match="sigma"):
        explain(0, out=tmp_path / "x.png", sigma=-1.0)


def test_explain_bars_are_probabilities(tmp_path):
    fig = explain(0, dataset="imagenet-samples", out=tmp_path / "p.png", attack_iters=1, top_k=1, dpi=40)
    bar_axes = [ax for ax in fig.axes if ax.patches]
    assert len(bar_axes) == 4  # top-5 before and after, clean and PGD rows
    for ax in bar_axes:
        widths = [p.get_width() for p in ax.patches]
        assert all(0.0 <= w <= 1.0 for w in widths) and sum(widths) <= 1.0 + 1e-6


def test_explain_cli_writes_png_and_refuses_bad_params(tmp_path):
    from click.testing import CliRunner

    from hbbench.cli import main

    out = tmp_path / "e.png"
    res = CliRunner().invoke(main, ["explain", "1", "--out", str(out), "--iters", "1", "--params", "top_k=1,sigma=6"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    res = CliRunner().invoke(main, ["explain", "1", "--out", str(tmp_path / "bad.png"), "--params", "top_k=0"])
    assert res.exit_code == 2 and "top_k" in res.output
    assert not (tmp_path / "bad.png").exists()


def test_explain_cli_takes_a_plugins_model_with_parameters(tmp_path):
    """`--plugin FILE --model 'name[key=value]'`: the model comes from the plugin, its parameter from the
    brackets (here the example CNN's checkpoint path); a parameter it does not take is one line, exit 2."""
    import subprocess
    import sys
    from pathlib import Path

    from click.testing import CliRunner

    from hbbench.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "tiny_cnn.py"
    weights = tmp_path / "tiny.pt"
    subprocess.run([sys.executable, str(example), str(weights)], check=True, timeout=300)  # its documented way
    out = tmp_path / "tiny.png"
    res = CliRunner().invoke(main, ["explain", "0", "--plugin", str(example), "--model", f"tiny_cnn[weights={weights}]",
                                    "--out", str(out), "--iters", "1", "--params", "top_k=1"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert out.read_bytes()[:4] == b"\x89PNG"
    res = CliRunner().invoke(main, ["explain", "0", "--plugin", str(example), "--model", "tiny_cnn[weigths=x.pt]",
                                    "--out", str(tmp_path / "bad.png")])
    assert res.exit_code == 2 and "weigths" in res.output and not (tmp_path / "bad.png").exists()


def test_explain_crafts_a_transfer_example_with_every_step(tmp_path, monkeypatch):
    """Row 2 is an oblivious example: crafted on the undefended model, shown through HeatBlur. It runs
    every step (make_attack's early stop on an undefended classifier would weaken the transfer)."""
    import hbbench.explain

    made = []
    real = hbbench.explain.make_attack
    monkeypatch.setattr(hbbench.explain, "make_attack", lambda *a, **kw: made.append(real(*a, **kw)) or made[-1])
    explain(0, dataset="imagenet-samples", out=tmp_path / "t.png", attack_iters=1, top_k=1, dpi=40)
    assert [(a.early_stop, a.best_iterate) for a in made] == [(False, False)]
