"""The report's figures (matplotlib, Agg). Every function takes tidy pandas frames and returns a Figure.

Colours: one Okabe-Ito colour per defense, fixed across every figure of a report (``defense_colors``);
markers tell attacks (or, comparing models, models) apart; every panel is titled with its threat model."""
from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from hbbench.threats import get_threat_model

# Okabe & Ito (2008), colour-blind safe. Black is kept for the undefended baseline; yellow comes last
# because it is faint on white.
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442"]
BASELINE = "#000000"
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
RANK_BUCKETS = [(1, 1, "rank 1"), (2, 5, "rank 2–5"), (6, 10, "rank 6–10"), (11, 100, "rank 11–100"),
                (101, None, "rank > 100")]
GOOD, BAD = "#009E73", "#D55E00"


# The report's type sizes, applied while a figure is drawn (``_styled``) and never to the process's
# matplotlib: a report drawn inside a notebook leaves the notebook's settings and backend as they were.
STYLE = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "legend.fontsize": 9, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "axes.spines.top": False, "axes.spines.right": False}
_styled = matplotlib.rc_context(STYLE)


def defense_colors(defenses: list[str]) -> dict[str, str]:
    """``none`` is black; the others take Okabe-Ito colours in grid order (cycling past seven)."""
    colors, i = {}, 0
    for d in defenses:
        if d == "none":
            colors[d] = BASELINE
        else:
            colors[d] = OKABE_ITO[i % len(OKABE_ITO)]
            i += 1
    return colors


def label_markers(labels: list[str]) -> dict[str, str]:
    """One marker per label (a run's attacks, or a grid's models), in order (cycling past eight)."""
    return {a: MARKERS[i % len(MARKERS)] for i, a in enumerate(labels)}




def png_bytes(fig, dpi: int = 110, colors: int | None = None, crop: bool = True) -> bytes:
    """The figure as PNG bytes; ``colors`` quantizes to a palette (photos: about 3x smaller files).
    ``crop``: trim to what is drawn, for a figure with artists outside its frame (a legend to the
    right); a figure laid out by ``tight_layout`` alone passes False, since cropping lays it out a
    second time (a quarter of a report's time)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if crop else None, facecolor="white")
    if colors:
        buf.seek(0)
        with Image.open(buf) as im:
            small = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                               dither=Image.Dither.FLOYDSTEINBERG)
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# The curves' panels have a fixed size in inches and their text fixed font sizes, so the margins
# tight_layout finds are the same in inches for every grid (measured on 1x1, 2x2 and 2x3 grids of a
# real run: left 0.65, right 0.15, bottom 0.57, top 0.34 below a 0.55 in legend band, gaps 0.20 and
# 0.76); set directly, they cost nothing, where tight_layout laid every figure out once more.
CURVE_MARGINS = dict(left=0.65, right=0.15, bottom=0.57, top=0.34 + 0.55, wspace=0.20, hspace=0.76)


def _margins(fig, nrow: int, ncol: int, left: float, right: float, bottom: float, top: float, wspace: float,
             hspace: float):
    """Place a grid of subplots with margins and gaps given in inches."""
    width, height = fig.get_size_inches()
    axw = (width - left - right - (ncol - 1) * wspace) / ncol
    axh = (height - bottom - top - (nrow - 1) * hspace) / nrow
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace / axw, hspace=hspace / axh)


@_styled
def robustness_curves(df: pd.DataFrame, metric: str, ylabel: str, attacks: list[str], threats: list[str],
                      colors: dict[str, str], clean_metric: dict[str, float]):
    """Defended metric vs budget: one row of panels per attack with a budget, one column per threat
    model, one line per defense (95% bootstrap band). Budget 0 is the defended clean input.

    ``df`` holds summary.csv's columns attack, eps, defense, threat_model, ``metric`` and its interval
    ``metric``_ci_low, ``metric``_ci_high.
    ``clean_metric``: defense -> the metric on clean inputs (the curve's start at eps = 0)."""
    nrow, ncol = len(attacks), len(threats)
    fig = Figure(figsize=(4.6 * ncol, 3.3 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False, sharey=True)
    for i, attack in enumerate(attacks):
        for j, threat in enumerate(threats):
            ax = axes[i][j]
            sub = df[(df.attack == attack) & (df.threat_model == threat)]
            ticks = {0.0}
            for k, (defense, color) in enumerate(colors.items()):
                line = sub[sub.defense == defense].sort_values("eps")
                if line.empty:
                    continue
                x = np.concatenate([[0.0], line.eps.to_numpy() * 255])
                y = np.concatenate([[clean_metric.get(defense, np.nan)], line[metric].to_numpy()])
                lo, hi = line[f"{metric}_ci_low"].to_numpy(), line[f"{metric}_ci_high"].to_numpy()
                ax.plot(x, y, marker=MARKERS[k % len(MARKERS)], ms=5, lw=1.8, color=color,
                        label=defense, ls="--" if defense == "none" else "-", zorder=3)
                ax.fill_between(x[1:], lo, hi, color=color, alpha=0.10, lw=0, zorder=1)
                ticks.update(np.round(x, 6))
            ax.set_title(f"{attack} — {get_threat_model(threat).title}", fontsize=9.5)
            ax.set_ylim(-0.03, 1.03)
            ax.set_xticks(sorted(ticks))
            ax.set_xticklabels([f"{t:g}" for t in sorted(ticks)])
            norm = str(sub.norm.iloc[0]) if "norm" in sub and not sub.empty else "inf"
            ax.set_xlabel(f"attack budget ε ({'L∞' if norm in ('inf', 'np.inf') else 'L' + norm}, in 1/255); "
                          "0 = clean input")
            if j == 0:
                ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for row in axes:  # a panel may lack a defense; collect every label once
        for ax in row:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
    _margins(fig, nrow, ncol, **CURVE_MARGINS)
    fig.legend(handles, labels, title=None, loc="upper center", ncol=min(len(labels), 8),
               bbox_to_anchor=(0.5, 1.0), frameon=False, handlelength=2.6)
    return fig


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both coordinates (higher is better), sorted by x."""
    keep = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for k, (x2, y2) in enumerate(points) if k != i)
        if not dominated:
            keep.append(i)
    return np.array(sorted(keep, key=lambda k: (points[k][0], -points[k][1])), dtype=int)


def _accuracy_panels(threats: list[str]):
    """One clean-vs-adversarial top-1 panel per threat model, the dotted 'no loss under attack' diagonal
    drawn; returns the figure and its axes."""
    fig = Figure(figsize=(4.8 * len(threats), 4.3))
    axes = fig.subplots(1, len(threats), squeeze=False, sharey=True)
    for j, (ax, threat) in enumerate(zip(axes[0], threats)):
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls=":")
        ax.set_title(get_threat_model(threat).title, fontsize=9.5)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("clean top-1 with the defense (fraction)")
        if j == 0:
            ax.set_ylabel("adversarial top-1 with the defense (fraction)")
        ax.grid(alpha=0.3)
    return fig, list(axes[0])


def _point(ax, x, y, marker: str, color: str):
    ax.scatter(x, y, s=70, marker=marker, facecolor=color, edgecolor="black", lw=0.6, zorder=3, alpha=0.9)


def _legend(fig, colors: dict[str, str], markers: dict[str, str], title: str, extra=()):
    """Colour swatches per defense, then a hollow marker per ``markers`` key, then ``extra`` handles."""
    handles = [Line2D([], [], marker="o", ls="", markerfacecolor=c, markeredgecolor="black", ms=8, label=d)
               for d, c in colors.items()]
    handles += [Line2D([], [], marker=m, ls="", markerfacecolor="white", markeredgecolor="black", ms=8, label=a)
                for a, m in markers.items()]
    fig.legend(handles=handles + list(extra), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               title=title)
    fig.tight_layout()


@_styled
def clean_vs_robust(points: pd.DataFrame, threats: list[str], colors: dict[str, str], markers: dict[str, str]):
    """Scatter of defended clean top-1 (x) vs defended adversarial top-1 (y), one point per defense per
    attack (at the attack's largest budget), one panel per threat model; a dashed line joins each
    attack's Pareto front (the defenses no other defense beats on both clean and robust accuracy)."""
    fig, axes = _accuracy_panels(threats)
    for ax, threat in zip(axes, threats):
        sub = points[points.threat_model == threat]
        for attack, marker in markers.items():
            pts = sub[sub.attack == attack]
            if pts.empty:
                continue
            for row in pts.itertuples():
                _point(ax, row.defended_clean_top1, row.defended_adv_top1, marker,
                       colors.get(row.defense, "#777777"))
            xy = pts[["defended_clean_top1", "defended_adv_top1"]].to_numpy(float)
            front = pareto_front(xy)
            if len(front) > 1:
                ax.plot(xy[front, 0], xy[front, 1], color="#555555", lw=1, ls="--", zorder=2)
    _legend(fig, colors, markers, "colour = defense\nshape = attack",
            [Line2D([], [], color="#555555", ls="--", label="Pareto front (per attack)")])
    return fig


@_styled
def models_clean_vs_robust(points: pd.DataFrame, threats: list[str], colors: dict[str, str],
                           markers: dict[str, str]):
    """The models of a grid side by side: defended clean top-1 (x) vs defended adversarial top-1 (y),
    one point per model per defense (``points``: columns model, defense, threat_model,
    defended_clean_top1, defended_adv_top1), one panel per threat model; colour = defense, marker =
    model (``markers``: model -> marker)."""
    fig, axes = _accuracy_panels(threats)
    for ax, threat in zip(axes, threats):
        for row in points[points.threat_model == threat].itertuples():
            _point(ax, row.defended_clean_top1, row.defended_adv_top1, markers[row.model],
                   colors.get(row.defense, "#777777"))
    _legend(fig, colors, markers, "colour = defense\nshape = model")
    return fig


def rank_buckets(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks)
    return np.array([np.mean((ranks >= lo) & ((ranks <= hi) if hi else True)) for lo, hi, _ in RANK_BUCKETS])


@_styled
def rank_shift(rows: dict[str, list[tuple[str, np.ndarray]]], title: str):
    """Stacked bars: where the true class sits in each ranking. ``rows``: threat model -> list of
    (label, true ranks), drawn top to bottom, one panel per threat model; MRR written at each bar."""
    cmap = colormaps["cividis"]
    shades = [cmap(v) for v in np.linspace(0.95, 0.05, len(RANK_BUCKETS))]
    threats = list(rows)
    height = max(2.6, 0.36 * max(len(v) for v in rows.values()) + 1.4)
    fig = Figure(figsize=(5.6 * len(threats), height))
    axes = fig.subplots(1, len(threats), squeeze=False)
    for j, threat in enumerate(threats):
        ax = axes[0][j]
        items = rows[threat]
        ypos = np.arange(len(items))[::-1]
        for (label, ranks), y in zip(items, ypos):
            fracs = rank_buckets(ranks)
            left = 0.0
            for k, f in enumerate(fracs):
                ax.barh(y, f, left=left, color=shades[k], edgecolor="white", lw=0.5,
                        label=RANK_BUCKETS[k][2] if y == ypos[0] else None)
                left += f
            mrr = float(np.mean(1.0 / np.asarray(ranks, float)))
            ax.text(1.02, y, f"MRR {mrr:.2f}", va="center", fontsize=8.5)
        ax.set_yticks(ypos)
        ax.set_yticklabels([lab for lab, _ in items], fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of images")
        ax.set_title(get_threat_model(threat).title, fontsize=9.5)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(RANK_BUCKETS), frameon=False,
               bbox_to_anchor=(0.5, 1.0), title=f"rank of the true class — {title}")
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    return fig


@_styled
def example_panels(images: list[dict], columns: list[str]):
    """A grid of example images. ``images``: one dict per row with ``title`` and, per column name, a
    dict with ``img`` ((3,H,W) in [0,1] or (H,W) for a perturbation map), ``lines`` (caption lines)
    and ``ok`` (True/False/None: whether the top-1 is right; drawn as a coloured frame + ✓/✗)."""
    nrow, ncol = len(images), len(columns)
    fig = Figure(figsize=(2.55 * ncol, 3.35 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for i, row in enumerate(images):
        for j, col in enumerate(columns):
            ax = axes[i][j]
            cell = row.get(col)
            if cell is None:
                ax.axis("off")
                continue
            img = np.asarray(cell["img"])
            if img.ndim == 3:
                ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1))
            else:
                ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ok = cell.get("ok")
            for spine in ax.spines.values():
                spine.set_visible(ok is not None)
                spine.set_color(GOOD if ok else BAD)
                spine.set_linewidth(3)
            if i == 0:
                ax.set_title(col, fontsize=9.5)
            ax.set_xlabel("\n".join(cell.get("lines", [])), fontsize=8, loc="left")
        axes[i][0].set_ylabel(row["title"], fontsize=9)
    fig.tight_layout()
    return fig
