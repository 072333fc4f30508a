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
