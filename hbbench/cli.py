"""The ``hbbench`` command line. Every user error prints one line and exits with code 2."""
from __future__ import annotations

import signal
import sys

import click
from click.core import ParameterSource

from hbbench.errors import HBBenchError
from hbbench.executors import EXECUTORS
from hbbench.progress import run_with_progress

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
@click.option("--n", type=int, default=20, show_default=True, help="First N samples of the dataset.")
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
@click.option("--executor", type=click.Choice(EXECUTORS.names()), default="local", show_default=True,
              help="local: this machine (--workers processes); ray: Ray tasks (--address).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes (local) or CPUs "
              "for a local Ray instance.")
@click.option("--address", default=None, help="Ray cluster address (auto, ray://host:10001); default: start a "
              "local Ray instance.")
@click.option("--loader-workers", type=int, default=0, show_default=True,
              help="DataLoader processes decoding images.")
@click.option("--threads", type=int, default=None, help="torch threads per worker (default: the cores divided "
              "by --workers).")
@click.option("--checks", default="default", show_default=True,
              help="Evaluation checks: none, default (cheap, from the run's records), full (adds attack runs: "
              "unbounded, not_converged, blackbox_beats_whitebox, binarization; then the remedy attacks of "
              "failed checks), or check names (hbbench list checks).")
@click.option("--check-samples", type=int, default=10, show_default=True,
              help="Images (the first ones) the costly checks attack again.")
@click.pass_context
def sweep(ctx, out, run_name, config, weights, download, trust_checkpoint, executor, workers, address,
          loader_workers, threads, checks, check_samples, **flags):
    """Run an attack x defense x budget x threat-model grid, then check its attacks; resumable, one file
    per finished cell."""
    from hbbench.plugins import load_refs as load_plugins
    from hbbench.spec import SweepSpec

    given = {SWEEP_FLAGS[k]: v for k, v in flags.items()
             if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}
    defaults = {SWEEP_FLAGS[k]: v for k, v in flags.items()}
    spec = SweepSpec.from_yaml(config, **given) if config else SweepSpec.from_dict(defaults)
    load_plugins(spec.plugins)  # the flags below may name a plugin's model
    spec.model_params.update(_model_flags(spec.models, weights=weights, download=download or None,
                                          trust_checkpoint=trust_checkpoint or None))
    spec.dataset_params.update(_accepted("dataset", spec.dataset, download=download or None))
    if workers < 1 or loader_workers < 0 or (threads is not None and threads < 1):
        raise HBBenchError("--workers and --threads must be >= 1, --loader-workers >= 0")
    if address and executor != "ray":
        raise HBBenchError("--address is for --executor ray")
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        run_with_progress(spec, out, run_name, executor=executor, workers=workers, address=address,
                   loader_workers=loader_workers, threads=threads, checks=checks, check_samples=check_samples)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _model_flags(models: list[str], **options) -> dict:
    """The model flags for a grid: with one model, as `_accepted` says; with several, a flag is given to
    each model that takes it (and refused when none does), and --weights, which names one model's
    file, is refused in favour of NAME[weights=PATH]."""
    from hbbench.models import MODELS
    from hbbench.spec import parse_item

    if len(models) == 1:
        return _accepted("model", parse_item(models[0])[0], **options)
    if options.get("weights") is not None:
        raise HBBenchError("--weights names one model's weights; with several models give each its own: "
                           "--model 'torchvision:resnet18[weights=PATH],...'")
    taken = {}
    for key, value in options.items():
        if value is None:
            continue
        if not any(key in MODELS.resolve(parse_item(m)[0])[0].params for m in models):
            raise HBBenchError(f"none of the models {', '.join(models)} takes --{key.replace('_', '-')}")
        taken[key] = value
    return taken


def _accepted(kind: str, name: str, **options) -> dict:
    """The options the named factory takes; an option it can't take is an error, not silently dropped."""
    from hbbench.datasets import DATASETS
    from hbbench.models import MODELS

    entry, _ = (MODELS if kind == "model" else DATASETS).resolve(name)
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in entry.params and not (key == "download" and kind == "dataset"):
            raise HBBenchError(f"{kind} '{name}' takes no --{key.replace('_', '-')}")
    return {k: v for k, v in given.items() if k in entry.params}


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--checks", default="full", show_default=True,
              help="none, default, full, or check names (hbbench list checks).")
@click.option("--check-samples", type=int, default=10, show_default=True,
              help="Images (the first ones) the costly checks attack again.")
@click.option("--executor", type=click.Choice(EXECUTORS.names()), default="local", show_default=True)
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("--address", default=None, help="Ray cluster address (with --executor ray).")
def check(run_dir, checks, check_samples, executor, workers, address):
    """Run evaluation checks on a finished run without recomputing its cells: the costly ones add their
    attack runs to the run directory (resumable like cells), then checks.csv and the worst-case rows of
    summary.csv are rewritten."""
    from pathlib import Path

    from hbbench.spec import SweepSpec
    from hbbench.store import RunStore

    root = Path(run_dir)
    manifest = RunStore(root).read_manifest() if root.is_dir() else None
    if manifest is None:
        raise HBBenchError(f"{root} is not a run directory (no manifest.json); run `hbbench sweep` first")
    if workers < 1:
        raise HBBenchError(f"--workers must be >= 1, got {workers}")
    spec = SweepSpec.from_dict(dict(manifest["spec"]), source=f"{root}/manifest.json")
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        run_with_progress(spec, str(root.parent), root.name, executor=executor, workers=workers, address=address,
                   checks=checks, check_samples=check_samples, require_finished=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


@main.command("list")
@click.argument("kind", type=click.Choice(["models", "datasets", "attacks", "defenses", "threat-models",
                                           "executors", "checks"]))
@click.option("--plugin", multiple=True, help="Also list what these plugin files or modules register.")
def list_cmd(kind, plugin):
    """List registered models, datasets, attacks, defenses, threat models, executors or checks (and what
    installed and --plugin plugins add: their source is shown)."""
    if plugin or kind in ("models", "datasets", "attacks", "defenses"):
        from hbbench.plugins import load_refs

        load_refs(plugin)
    if kind == "threat-models":
        from hbbench.defenses.threat import THREAT_MODELS

        for t in THREAT_MODELS.values():
            click.echo(f"{t.name:20s} {t.description}")
        return
    entries = _registry(kind).entries()
    width = max([20] + [len(e.display_name) + 1 for e in entries])
    for entry in entries:
        origin = "" if entry.source == "hbbench" else f" (plugin {entry.source})"
        click.echo(f"{entry.display_name:{width}s} {entry.description}{origin}")
        params = ", ".join(f"{k}={_show(k, v)}" for k, v in entry.params.items())
        if params:
            click.echo(f"{'':{width}s}   params: {params}")


def _registry(kind):
    if kind == "models":
        from hbbench.models import MODELS as reg
    elif kind == "datasets":
        from hbbench.datasets import DATASETS as reg
    elif kind == "attacks":
        from hbbench.attacks import ATTACKS as reg
    elif kind == "executors":
        return EXECUTORS
    elif kind == "checks":
        from hbbench.checks import CHECKS as reg, import_checks

        import_checks()
    else:
        from hbbench.defenses import DEFENSES as reg
    return reg


def _show(key: str, value) -> str:
    import inspect

    if value is inspect.Parameter.empty:
        return "<required>"
    if isinstance(value, float) and key.startswith("eps"):
        frac = value * 255
        return f"{frac:g}/255" if abs(frac - round(frac)) < 1e-9 and 0 < value < 1 else f"{value:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Parent directory of run directories; without RUN_DIR the newest run there is reported.")
@click.option("--no-examples", is_flag=True, help="Skip the example images (they reload the model and rerun "
              "the attack on a few images).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Device for recomputing the example images.")
@click.option("--strict", is_flag=True, help="Exit 2 instead of leaving damaged cells out of the report.")
def report(run_dir, out, no_examples, device, strict):
    """Write report.html (self-contained) and report.md (+ report_files/) into a run directory."""
    from pathlib import Path

    from hbbench.report import build_report
    from hbbench.store import newest_run

    if run_dir is None:
        found = newest_run(out)
        if found is None:
            raise HBBenchError(f"no run under {out}/ (no */manifest.json); run `hbbench sweep --out {out}` first "
                               "or give a RUN_DIR")
        run_dir = found
    elif not Path(run_dir).is_dir():
        raise HBBenchError(f"no run directory at {run_dir}")
    html_path, md_path = build_report(run_dir, examples=not no_examples, device=device, strict=strict,
                                      on_progress=lambda m: click.echo(f"report: {m}", err=True))
    click.echo(f"wrote {html_path} and {md_path} (+ {Path(md_path).parent / 'report_files'}/)")


@main.command()
@click.argument("image")
@click.option("--data", default="imagenet-samples", show_default=True,
              help="Dataset IMAGE indexes into when IMAGE is a number.")
@click.option("--model", "-m", default="efficientnet_lite0", show_default=True)
@click.option("--out", "-o", default="heatblur_explain.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG file to write.")
@click.option("--eps", default="4/255", show_default=True, help="Linf budget of the PGD row.")
@click.option("--iters", type=int, default=10, show_default=True, help="PGD steps.")
@click.option("--params", "params", default="", help="HeatBlur parameters, e.g. 'top_k=2,sigma=8,method=saliency' "
              "(hbbench list defenses shows them).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def explain(image, data, model, out, eps, iters, params, device, seed):
    """Draw Heat-and-Blur on one image (a file, or an index into --data): clean and PGD rows, heatmaps of
    the top-k classes, the blurred and defended inputs, top-5 before and after."""
    from hbbench.classifier import resolve_device
    from hbbench.explain import explain as draw
    from hbbench.spec import parse_budget, parse_item

    if iters < 1:
        raise HBBenchError(f"--iters must be >= 1, got {iters}")
    _, defense_params = parse_item(f"heatblur[{params}]")
    draw(image, dataset=data, model=model, out=out, eps=parse_budget(eps), attack_iters=iters,
         device=resolve_device(device), seed=seed, **defense_params)
    click.echo(f"wrote {out}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.pass_context
def verify(ctx, run_dir):
    """Check the manifest and every cell of a run directory: a table of ok / damaged / missing / foreign
    files. Exit 0 when all is ok, 1 when anything is not, 2 when RUN_DIR is not a run directory."""
    from collections import Counter

    from hbbench.integrity import DAMAGED, FOREIGN, MISSING, OK, verify_run

    spec_id, findings = verify_run(run_dir)
    click.echo(f"{run_dir}: spec {spec_id or 'unknown'}")
    width = max(len(f.path) for f in findings)
    for f in findings:
        click.echo(f"{f.status:8s} {f.path:{width}s}  {f.reason}".rstrip())
    counts = Counter(f.status for f in findings)
    click.echo(", ".join(f"{counts[s]} {s}" for s in (OK, DAMAGED, MISSING, FOREIGN) if counts[s]))
    if set(counts) != {OK}:
        click.echo("the same `hbbench sweep` command (with --run NAME) sets damaged and foreign files aside "
                   "under damaged/ and recomputes what is missing", err=True)
        ctx.exit(1)


if __name__ == "__main__":
    main()
