"""Heat-and-Blur ablation: method x top_k x sigma x mode beside ART baselines, under oblivious attacks.

    python bench/ablate_heatblur.py --n 200 --data ../shared/datasets/imagenet-samples-200

Reads the images in place (never copies them). The oblivious adversarial examples (crafted against the
undefended model) are computed ONCE per attack and cached as .npy under --cache, then reused by every
defense configuration; relevance maps are computed once per (method, top_k, input set) and every
(sigma, mode, heat_sigma, keep_sigma) variant reuses them through the very functions HeatBlur.forward
calls (relevance_map -> mask_from_relevance -> compose). Prints markdown tables.

Columns: clean = defended top-1 on clean images; for each attack: defended top-1 on the adversarial
images and the paper's NDCG (metrics.ranking.ranking_ndcg, tau=0.9) of the defended adversarial output
against the undefended clean output.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hbbench.attacks import TRANSFER, make_attack
from hbbench.classifier import make_classifier, predict_probs, with_defenses
from hbbench.datasets import load_dataset
from hbbench.defenses import StraightThrough, make_defense
from hbbench.metrics.ranking import ranking_ndcg

ATTACKS = {  # name -> (preset, params); eps_step = eps/4 (preset default), Linf, one seeded random start;
    # oblivious, so PGD runs every step (TRANSFER)
    "pgd2": ("pgd", dict(eps=2 / 255, max_iter=10, **TRANSFER)),
    "fgsm2": ("fgsm", dict(eps=2 / 255)),
    "pgd4": ("pgd", dict(eps=4 / 255, max_iter=10, **TRANSFER)),
}
BASELINES = [("none", {}), ("jpeg", dict(quality=75)), ("median", dict(window_size=3)), ("blur", dict(sigma=2.0)),
             ("blur", dict(sigma=1.5)), ("blur", dict(sigma=1.0))]
TVM = ("tvm", {})  # TotalVarMin (PyTorch port of ART's, defenses/tvm.py); opt-in with --tvm

# HeatBlur grid: (method, top_k) pairs get one relevance pass per input set; every composition below
# reuses it. Chosen to fit ~25 min on a shared 2-core CPU.
RELEVANCE = [("guided_backprop", 3), ("guided_backprop", 1), ("saliency", 3), ("gradcam", 3)]
COMPOSITIONS = [  # (mode, sigma, heat_sigma, keep_sigma), all for the first (method, top_k)
    ("heatmap", 8.0, 4.0, 0.0),   # the paper's literal composition
    ("mask", 4.0, 4.0, 0.0),
    ("inverse", 8.0, 4.0, 0.0),
    ("inverse", 4.0, 4.0, 1.0),
    ("inverse", 8.0, 4.0, 1.0),
    ("inverse", 16.0, 4.0, 1.0),
]
# (method, top_k) pairs after the first get this subset of compositions
SUBSET = [("inverse", 8.0, 4.0, 1.0)]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cached(path: Path, fn):
    if path.exists():
        return np.load(path)
    t = time.perf_counter()
    arr = fn()
    np.save(path, arr)
    log(f"  computed {path.name} in {time.perf_counter() - t:.0f}s")
    return arr


def row_metrics(probs: dict, y, clean_ref) -> dict:
    out = {"clean": float((probs["clean"].argmax(1) == y).mean())}
    for k, p in probs.items():
        if k != "clean":
            out[k] = float((p.argmax(1) == y).mean())
            out[k + "_ndcg"] = float(ranking_ndcg(clean_ref, p).mean())
    return out


def fmt_table(rows, attacks):
    head = "| defense | clean top-1 | " + " | ".join(f"{a} top-1 | {a} NDCG" for a in attacks) + " |"
    sep = "|" + "---|" * (2 + 2 * len(attacks))
    lines = [head, sep]
    for name, m in rows:
        cells = [f"{m['clean']:.3f}"] + [f"{m[a]:.3f} | {m[a + '_ndcg']:.3f}" if a in m else "– | –"
                                         for a in attacks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--data", default="../shared/datasets/imagenet-samples-200")
    ap.add_argument("--cache", default="/tmp/hbbench-ablate-cache")
    ap.add_argument("--attacks-only", action="store_true", help="compute and cache the adversarial sets, then stop")
    ap.add_argument("--bpda-n", type=int, default=0, help="images for the BPDA PGD-10 2/255 run (0 = skip)")
    ap.add_argument("--bpda-config", default='{"method": "guided_backprop", "top_k": 3, "mode": "inverse", '
                    '"sigma": 8.0, "keep_sigma": 1.0}', help="HeatBlur params (JSON) for the BPDA run")
    ap.add_argument("--only", default="", help="comma list of table sections: baselines,heatblur")
    ap.add_argument("--attacks", default=",".join(ATTACKS), help="comma list of attacks to use (cached ones are reused)")
    ap.add_argument("--grid-sets", default="", help="comma list of input sets for the HeatBlur grid rows "
                    "(default: clean and all attacks); baselines and the first composition always get all")
    ap.add_argument("--config", default="", help="evaluate only this HeatBlur config (JSON params) instead of "
                    "the grid, on all sets")
    ap.add_argument("--tvm", action="store_true", help="add TotalVarMin (tvm) to the baselines")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    # sample="first": the documented tables (docs/heatblur.md, README) were measured on the first N images
    ds = load_dataset(f"imagefolder:{args.data}", n=args.n, sample="first")
    x, y = ds.x, ds.y
    key = hashlib.sha1(x.tobytes()).hexdigest()[:10]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    clf = make_classifier("efficientnet_lite0", device="cpu")
    log(f"{len(y)} images from {args.data}, cache {cache} (data hash {key})")

    adv = {}
    for name in args.attacks.split(","):
        preset, params = ATTACKS[name]
        def run(preset=preset, params=params):
            np.random.seed(0)
            torch.manual_seed(0)
            return make_attack(preset, clf, **params).generate(x, y=y).astype(np.float32)
        adv[name] = cached(cache / f"{name}_{key}.npy", run)
        log(f"  {name} ready")
    if args.attacks_only:
        return
    sets = {"clean": x, **adv}
    clean_ref = cached(cache / f"clean_probs_{key}.npy", lambda: predict_probs(clf, x))
    log(f"undefended clean top-1 {(clean_ref.argmax(1) == y).mean():.3f}")
    sections = set(args.only.split(",")) if args.only else {"baselines", "heatblur"}
    rows = []

    if "baselines" in sections:
        for name, params in BASELINES + ([TVM] if args.tvm else []):
            label = name + ("" if not params else " " + ",".join(f"{k}={v}" for k, v in params.items()))
            tag = hashlib.sha1(label.encode()).hexdigest()[:8]
            d = make_defense(name, clf, **params)
            dclf = with_defenses(clf, [d] if d is not None else [])
            t = time.perf_counter()
            probs = {k: cached(cache / f"base_{tag}_{k}_{key}.npy", lambda v=v: predict_probs(dclf, v)) for k, v in sets.items()}
            rows.append((label, row_metrics(probs, y, clean_ref)))
            log(f"  {label}: {rows[-1][1]}  ({time.perf_counter() - t:.0f}s)")

    if "heatblur" in sections:
        grid_sets = args.grid_sets.split(",") if args.grid_sets else list(sets)
        if args.config:
            cfg = json.loads(args.config)
            plan = [((cfg.get("method", "guided_backprop"), cfg.get("top_k", 3)),
                     [(cfg.get("mode", "mask"), cfg.get("sigma", 8.0), cfg.get("heat_sigma", 4.0),
                       cfg.get("keep_sigma", 0.0))], list(sets))]
        else:
            plan = [(mk, COMPOSITIONS if i == 0 else SUBSET, grid_sets) for i, mk in enumerate(RELEVANCE)]
        for (method, top_k), comps, use in plan:
            hb = make_defense("heatblur", clf, method=method, top_k=top_k)
            rel = {}
            for k in use:
                def rel_fn(v=sets[k], hb=hb):
                    return np.concatenate([hb.relevance_map(torch.from_numpy(v[j:j + 16])).numpy()
                                           for j in range(0, len(v), 16)])
                rel[k] = cached(cache / f"rel_{method}_k{top_k}_{k}_{key}.npy", rel_fn)
            for mode, sigma, heat_sigma, keep_sigma in comps:
                hb = make_defense("heatblur", clf, method=method, top_k=top_k, mode=mode, sigma=float(sigma),
                                  heat_sigma=float(heat_sigma), keep_sigma=float(keep_sigma))
                label = f"heatblur {method} k={top_k} {mode} σ={sigma:g} heatσ={heat_sigma:g} keepσ={keep_sigma:g}"
                tag = hashlib.sha1(label.encode()).hexdigest()[:8]
                t = time.perf_counter()
                probs = {}
                for k in use:
                    def run(v=sets[k], r=rel[k], hb=hb):
                        with torch.no_grad():
                            out = hb.compose(torch.from_numpy(v), hb.mask_from_relevance(torch.from_numpy(r)))
                        return predict_probs(clf, out.numpy())
                    probs[k] = cached(cache / f"hb_{tag}_{k}_{key}.npy", run)
                rows.append((label, row_metrics(probs, y, clean_ref)))
                log(f"  {label}: {rows[-1][1]}  ({time.perf_counter() - t:.0f}s)")

    if rows:
        print(f"\nOblivious attacks on {len(y)} images ({args.data}), efficientnet_lite0; "
              "top-1 = defended top-1, NDCG vs the undefended clean output\n")
        print(fmt_table(rows, list(ATTACKS)))

    if args.bpda_n:
        params = json.loads(args.bpda_config)
        n = args.bpda_n
        hb = make_defense("heatblur", clf, **params)
        defended = with_defenses(clf, [hb])
        attacker = with_defenses(clf, [StraightThrough(hb)])
        np.random.seed(0)
        torch.manual_seed(0)
        t = time.perf_counter()
        xa = make_attack("pgd", attacker, eps=2 / 255, max_iter=10).generate(x[:n], y=y[:n]).astype(np.float32)
        secs = time.perf_counter() - t
        p_clean = predict_probs(defended, x[:n])
        p_adv = predict_probs(defended, xa)
        print(f"\nBPDA PGD-10 2/255 against StraightThrough(HeatBlur {params}) on the first {n} images "
              f"({secs:.0f}s): defended clean top-1 {(p_clean.argmax(1) == y[:n]).mean():.3f}, defended adv "
              f"top-1 {(p_adv.argmax(1) == y[:n]).mean():.3f}, NDCG {ranking_ndcg(clean_ref[:n], p_adv).mean():.3f}")


if __name__ == "__main__":
    main()
