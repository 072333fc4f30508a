"""The ``hbbench`` command line. Every user error prints one line and exits with code 2."""
from __future__ import annotations

import signal
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import click
from click.core import ParameterSource

from hbbench.errors import HBBenchError
from hbbench.labels import param_label
from hbbench.options import CheckBudgets, SweepOptions
from hbbench.spec import SweepSpec
from hbbench.threats import THREAT_MODELS

# Each command imports what it runs when it runs (the lines marked "lazy"): torch, ART, the models and
# pandas load only for a command that needs them, so `hbbench --help` and a usage error answer at once.

EXIT_USAGE = 2


class OneLineErrors(click.Group):
    """Print user errors (ours and click's) as one line on stderr, exit 2, no traceback."""

    def main(self, args=None, prog_name=None, **kwargs):
        try:
            rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **kwargs)
        except HBBenchError as exc:
            _fail(str(exc))
        except click.UsageError as exc:
            if type(exc).__name__.startswith("NoArgsIsHelp"):  # a bare `hbbench`: show the help
                click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
                sys.exit(0)
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _fail(exc.format_message() + hint)
        except click.ClickException as exc:
            _fail(exc.format_message())
        except (click.exceptions.Abort, KeyboardInterrupt) as exc:
            # click turns Ctrl-C (SIGINT) into Abort; the KeyboardInterrupt is its cause
            interrupt = exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__
            if not isinstance(interrupt, KeyboardInterrupt):
                click.echo("aborted", err=True)
                sys.exit(130)
            where = getattr(interrupt, "run_dir", None)
            click.echo(f"interrupted: every finished cell is on disk{f' in {where}' if where else ''}; "
                       "run the same command again to resume", err=True)
            sys.exit(getattr(interrupt, "exit_code", 130))
        sys.exit(rv if isinstance(rv, int) else 0)


class Terminated(KeyboardInterrupt):
    """SIGTERM (plain `kill`, a pre-empted cluster node) stops a sweep the way Ctrl-C does: the summary
    of the finished cells is written and the manifest says "interrupted". Exit 143 = 128 + SIGTERM."""
    exit_code = 143


def _raise_terminated(signum, frame):
    raise Terminated()


def _fail(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hbbench")
def main():
    """hbbench: how much does defense D help model M against attack A? (ART + Heat-and-Blur)"""


SWEEP_FLAGS = {"attacks": "attacks", "defense": "defenses", "model": "models", "data": "dataset", "eps": "eps",
               "threat": "threat_models", "n": "n", "batch_size": "batch_size", "shard_size": "shard_size",
               "device": "device", "seed": "seed", "plugin": "plugins"}


@main.command()
@click.option("--attacks", "-a", default="fgsm,pgd,cw", show_default=True,
              help="Comma list of attack presets; NAME[key=value,...] overrides a preset's parameters.")
@click.option("--defense", "--defenses", "-d", "defense", default="heatblur,jpeg", show_default=True,
              help="Comma list of defenses (`none` is always added); NAME[key=value,...] sets parameters.")
@click.option("--model", "--models", "-m", "model", default="efficientnet_lite0", show_default=True,
              help="Comma list of models (hbbench list models), compared in one grid; NAME[key=value,...] sets a "
              "model's own parameters, e.g. 'torchvision:resnet18[weights=r18.pt]'.")
@click.option("--data", default="imagenet-samples", show_default=True, help="Dataset name (hbbench list datasets), "
              "parameters in brackets: \"imagefolder:PATH[sample=first]\".")
@click.option("--eps", default="4/255", show_default=True, help="Budgets for attacks that take one, e.g. 2/255,4/255.")
@click.option("--threat", default="oblivious,bpda", show_default=True,
              help="Threat models (hbbench list threat-models): oblivious, bpda, adaptive.")
@click.option("--n", type=int, default=20, show_default=True, help="Samples: the first N; image folders (imagefolder, "
              "imagenet) draw N class-balanced ones from --seed ([sample=first] takes the first N).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Batch size of attacks, defenses "
              "and predictions.")
@click.option("--shard-size", type=int, default=None, help="Split the data into shards of this many samples, "
              "each evaluated on its own and merged (bounded memory; units of parallel work).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Parent directory of run directories.")
@click.option("--run", "run_name", default=None, help="Run directory name (default: derived from the grid, so "
              "the same command resumes the same run).")
@click.option("--plugin", multiple=True, help="A Python file or module registering your own models, datasets, "
              "attacks or defenses (docs/plugins.md); repeatable.")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="YAML file with sweep options (keys as in SweepSpec); flags given on the command line win.")
@click.option("--weights", default=None, help="Model weights: a local state dict, or DEFAULT for torchvision's.")
@click.option("--download", is_flag=True, help="Allow downloading weights or data (never done otherwise).")
@click.option("--trust-checkpoint", is_flag=True, help="Allow unpickling a full-model checkpoint (can run code).")
@click.option("--executor", default="local", show_default=True,
              help="local: this machine (--workers processes); ray: Ray tasks (--address); hbbench list executors.")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes (local) or CPUs "
              "for a local Ray instance.")
@click.option("--address", default=None, help="Ray cluster address (auto, ray://host:10001); default: start a "
              "local Ray instance.")
@click.option("--loader-workers", type=int, default=0, show_default=True,
              help="DataLoader processes decoding images.")
@click.option("--threads", type=int, default=None, help="torch threads per worker (default: the cores divided "
              "by --workers).")
@click.option("--checks", default="default", show_default=True,
              help="Evaluation checks: none, default (cheap, from the run's records), full (adds the costly "
              "ones, which attack again, then the remedy attacks of failed checks), or check names (hbbench "
              "list checks marks the costly ones).")
@click.option("--check-samples", type=int, default=10, show_default=True,
              help="Images (the first ones) the costly checks attack again.")
@click.option("--save-examples", default="4", show_default=True, metavar="N|all|0",
              help="Adversarial examples each cell stores (float32, as crafted; the run's first N images): the "
              "report's panels and `hbbench export` read them. 0.2-0.4 MB per 224 px image (compressed, lossless).")
@click.option("--surrogate", default=None, help="A model (hbbench list models) the remedies may craft transfer "
              "examples on, where every gradient of the model under test is masked (--checks full).")
@click.pass_context
def sweep(ctx, out, run_name, config, weights, download, trust_checkpoint, executor, workers, address,
          loader_workers, threads, checks, check_samples, save_examples, surrogate, **flags):
    """Run an attack x defense x budget x threat-model grid, then check its attacks; resumable, one file
    per finished cell."""
    from hbbench import grid as grids, progress  # lazy

    given = {SWEEP_FLAGS[k]: v for k, v in flags.items()
             if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}
    defaults = {SWEEP_FLAGS[k]: v for k, v in flags.items()}
    spec = SweepSpec.from_yaml(config, **given) if config else SweepSpec.from_dict(defaults)
    grid = grids.resolve(spec, model_options=dict(weights=weights, download=download or None,
                                            trust_checkpoint=trust_checkpoint or None),
                   dataset_options=dict(download=download or None))
    options = SweepOptions(out=out, run=run_name, executor=executor, workers=workers, address=address,
                           loader_workers=loader_workers, threads=threads, checks=checks, check_samples=check_samples,
                           save_examples=save_examples, check_budgets=CheckBudgets(surrogate=surrogate))
    _with_sigterm(progress.run_with_progress, grid, options)


def _with_sigterm(fn, *args):
    """SIGTERM stops a sweep as Ctrl-C does (see Terminated)."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        fn(*args)
    finally:
        signal.signal(signal.SIGTERM, previous)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--checks", default="full", show_default=True,
              help="none, default, full, or check names (hbbench list checks).")
@click.option("--check-samples", type=int, default=10, show_default=True,
              help="Images (the first ones) the costly checks attack again.")
@click.option("--executor", default="local", show_default=True, help="local or ray (hbbench list executors).")
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("--address", default=None, help="Ray cluster address (with --executor ray).")
def check(run_dir, checks, check_samples, executor, workers, address):
    """Run evaluation checks on a finished run without recomputing its cells: the costly ones add their
    attack runs to the run directory (resumable like cells), then checks.csv and the worst-case rows of
    summary.csv are rewritten."""
    from hbbench import grid as grids, progress, rundir  # lazy

    options = SweepOptions(executor=executor, workers=workers, address=address, checks=checks,
                           check_samples=check_samples, require_finished=True)
    run = rundir.RunDir.open(run_dir)
    grid = grids.resolve_manifest(run.require_manifest(), source=str(run.manifest_path))
    _with_sigterm(progress.run_with_progress, grid, replace(options, out=run.root.parent, run=run.root.name))


@main.command("list")
@click.argument("kind", type=click.Choice(["models", "datasets", "attacks", "defenses", "threat-models",
                                           "executors", "checks"]))
@click.option("--plugin", multiple=True, help="Also list what these plugin files or modules register.")
def list_cmd(kind, plugin):
    """List registered models, datasets, attacks, defenses, threat models, executors or checks (and what
    installed and --plugin plugins add: their source is shown)."""
    if kind == "threat-models":  # the table alone: no torch to import
        for t in THREAT_MODELS.values():
            click.echo(f"{t.name:20s} {t.description}")
        return
    from hbbench import catalogue, plugins  # lazy

    plugins.load_refs(plugin)
    entries = catalogue.registry_of(kind).entries()
    width = max([20] + [len(e.display_name) + 1 for e in entries])
    for entry in entries:
        origin = "" if entry.source == "hbbench" else f" (plugin {entry.source})"
        cost = " [costly: --checks full]" if entry.meta.get("cost") == "costly" else ""
        click.echo(f"{entry.display_name:{width}s} {entry.description}{cost}{origin}")
        params = ", ".join(f"{k}={param_label(k, v)}" for k, v in entry.params.items())
        if params:
            click.echo(f"{'':{width}s}   params: {params}")


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Parent directory of run directories; without RUN_DIR the newest run there is reported.")
@click.option("--no-examples", is_flag=True, help="Skip the example panels (drawn from the adversarial examples "
              "the sweep stored) and the Heat-and-Blur explanation figure.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Device for the Heat-and-Blur explanation figure's heatmaps (the one part of the report that "
              "runs the model; no attack runs).")
@click.option("--strict", is_flag=True, help="Exit 2 instead of leaving damaged cells out of the report.")
def report(run_dir, out, no_examples, device, strict):
    """Write report.html (self-contained) and report.md (+ report_files/) into a run directory."""
    from hbbench import report as reporting, rundir  # lazy

    if run_dir is None:
        found = rundir.newest_run(out)
        if found is None:
            raise HBBenchError(f"no run under {out}/ (no */manifest.json); run `hbbench sweep --out {out}` first "
                               "or give a RUN_DIR")
        run_dir = found
    html_path, md_path = reporting.build_report(run_dir, examples=not no_examples, device=device, strict=strict,
                                      on_progress=lambda m: click.echo(f"report: {m}", err=True))
    click.echo(f"wrote {html_path} and {md_path} (+ {Path(md_path).parent / 'report_files'}/)")


@main.command()
@click.argument("image")
@click.option("--data", default="imagenet-samples", show_default=True,
              help="Dataset IMAGE indexes into when IMAGE is a number.")
@click.option("--model", "-m", default="efficientnet_lite0", show_default=True,
              help="Model (hbbench list models); NAME[key=value,...] sets its parameters.")
@click.option("--out", "-o", default="heatblur_explain.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG file to write.")
@click.option("--eps", default="4/255", show_default=True, help="Linf budget of the PGD row.")
@click.option("--iters", type=int, default=10, show_default=True, help="PGD steps.")
@click.option("--params", "params", default="", help="HeatBlur parameters, e.g. 'top_k=2,sigma=8,method=saliency' "
              "(hbbench list defenses shows them).")
@click.option("--plugin", multiple=True, help="A Python file or module registering models or datasets; repeatable.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def explain(image, data, model, out, eps, iters, params, plugin, device, seed):
    """Draw Heat-and-Blur on one image (a file, or an index into --data): clean and PGD rows, heatmaps of
    the top-k classes, the blurred and defended inputs, top-5 before and after."""
    from hbbench import classifier, explain as drawing, grid as grids, models  # lazy

    if iters < 1:
        raise HBBenchError(f"--iters must be >= 1, got {iters}")
    # The figure's one cell (its model, its HeatBlur) resolved like a sweep's: plugins, names, parameters.
    grid = grids.resolve(SweepSpec(attacks=["pgd"], defenses=[f"heatblur[{params}]"], models=[model], dataset=data,
                             eps=eps, threat_models=["oblivious"], n=1, plugins=list(plugin)), source="explain")
    cell = next(c for c in grid.cells if c.defense_name == "heatblur")
    drawing.explain(image, dataset=data, model=models.load_model(cell.model, **dict(cell.model_params)), out=out,
                    eps=cell.eps, attack_iters=iters, device=classifier.resolve_device(device), seed=seed, **dict(cell.defense_params))
    click.echo(f"wrote {out}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.pass_context
def verify(ctx, run_dir):
    """Check the manifest and every cell of a run directory: a table of ok / damaged / missing / foreign
    files. Exit 0 when all is ok, 1 when anything is not, 2 when RUN_DIR is not a run directory."""
    from hbbench import integrity, verification  # lazy

    spec_id, findings = verification.verify_run(run_dir)
    click.echo(f"{run_dir}: spec {spec_id or 'unknown'}")
    width = max(len(f.path) for f in findings)
    for f in findings:
        click.echo(f"{f.status:8s} {f.path:{width}s}  {f.reason}".rstrip())
    counts = Counter(f.status for f in findings)
    statuses = (integrity.OK, integrity.DAMAGED, integrity.MISSING, integrity.FOREIGN)
    click.echo(", ".join(f"{counts[s]} {s}" for s in statuses if counts[s]))
    if set(counts) != {integrity.OK}:
        click.echo("the same `hbbench sweep` command (with --run NAME) sets damaged and foreign files aside "
                   "under damaged/ and recomputes what is missing", err=True)
        ctx.exit(1)


@main.command("leaderboard")
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Folder to write into (default: the first FOLDER).")
def leaderboard(folders, out):
    """One table over every run under FOLDERS: leaderboard.csv, .md and .html (self-contained)."""
    from hbbench import leaderboard as board  # lazy

    runs, left_out = board.collect(folders)
    if left_out:
        click.echo(f"left out (in progress or damaged): {'; '.join(left_out)}", err=True)
    target = Path(out or folders[0])
    try:
        paths = board.write(board.table(runs), target, left_out)
    except OSError as exc:
        raise HBBenchError(f"cannot write the leaderboard into {target}: {exc.strerror or exc}") from None
    click.echo(f"{len(runs)} run(s); wrote {', '.join(map(str, paths))}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="The .npz file to write (NumPy: it loads without hbbench or torch).")
@click.option("--cells", "cells_filter", default=None, metavar="FILTER",
              help="Only the cells that match every key=value pair, e.g. 'defense=jpeg,threat_model=bpda' (keys: "
              "cell_id, model, attack, eps, norm, defense, threat_model).")
def export(run_dir, out_file, cells_filter):
    """Write a run's stored adversarial examples, with their image ids, labels, budgets, norms, threat
    models, defenses, the run's top-1 per cell and its manifest, into one portable .npz file."""
    from hbbench import export as exporting  # lazy

    done = exporting.export(run_dir, out_file, cells_filter)
    if done["skipped"]:
        click.echo(f"left out (no stored examples): {'; '.join(done['skipped'])}", err=True)
    click.echo(f"wrote {out_file}: {done['images']} adversarial examples of {done['cells']} cell(s)")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--model", "-m", default=None, help="Model to score with (default: the run's), as in `hbbench sweep`.")
@click.option("--defense", "-d", default=None, help="Defense to score through (default: each cell's).")
@click.option("--plugin", multiple=True, help="A Python file or module registering the model, defense or dataset; "
              "repeatable (the run's plugin paths are not used).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Device to predict on (default: the run's).")
@click.option("--batch-size", type=int, default=None, help="Prediction batch size (default: the run's).")
@click.pass_context
def recheck(ctx, file, model, defense, plugin, device, batch_size):
    """Audit an export's adversarial examples (finite, in [0, 1], within eps of the clean images loaded
    again from the dataset it names, ids and labels as there), then score them through the defense and
    the model. Prints per cell the run's top-1 beside the recomputed one and names every image where
    they disagree. Exit 0 when all agree, 1 on a failed audit or a disagreement beyond float noise."""
    from hbbench import recheck as rechecking  # lazy

    checks = rechecking.recheck(file, model=model, defense=defense, plugins=plugin, device=device,
                                batch_size=batch_size)
    width = max(len(c.label) for c in checks)
    click.echo(f"{'cell':{width}s}  images  top-1 summary.csv  top-1 stored  top-1 recomputed")
    for c in checks:
        recomputed = "audit failed" if c.audit else f"{c.top1_recomputed:.4f}"
        click.echo(f"{c.label:{width}s}  {c.exported:>3d}/{c.n:<3d}  {c.top1_summary:17.4f}  {c.top1_stored:12.4f}  "
                   f"{recomputed:>16s}")
        for line in c.audit:
            click.echo(f"  audit: {line}")
        for line in c.flips:
            click.echo(f"  disagrees: {line}")
        for line in c.noise:
            click.echo(f"  differs (float noise): {line}")
    failed = [c for c in checks if c.failed]
    images = sum(c.exported for c in checks)
    if failed:
        click.echo(f"{len(failed)} of {len(checks)} cell(s) fail: {sum(len(c.audit) for c in failed)} example(s) fail "
                   f"the audit, {sum(len(c.flips) for c in failed)} disagree beyond float noise", err=True)
        ctx.exit(1)
    noise = sum(len(c.noise) for c in checks)
    click.echo(f"{images} examples in {len(checks)} cell(s): every recomputed top-1 equals the run's"
               + (f" but for {noise} image(s) named above (float noise)" if noise else ""))


if __name__ == "__main__":
    main()
