"""How a sweep runs, as opposed to what it computes (the spec): one frozen object that travels from
the command line through ``hbbench.api.sweep`` to the executor, checked once, here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hbbench.errors import HBBenchError

CHECK_SAMPLES = 10  # images the costly checks attack again: the first 10 of the run
SAVE_EXAMPLES = 4  # adversarial examples a cell stores unless told: the report's panels show 3 chosen among them


def parse_save_examples(value) -> int | None:
    """``--save-examples``: a count >= 0, or ``all`` (None: every image). Stored as
    hbbench.examples_store describes."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if isinstance(value, bool) or n < 0 or (isinstance(value, float) and value != n):
        raise HBBenchError(f"--save-examples takes a count >= 0 or 'all', got {value!r}")
    return n


@dataclass(frozen=True)
class CheckBudgets:
    """What the costly checks and the remedies spend (docs/evaluation.md, "Remedies"). The defaults are
    the documented budgets; a smaller one (tests, a quick look) plans other cells, so a run keeps the
    budgets it was made with (recorded in its manifest when they are not the defaults)."""
    square_queries: int = 100  # blackbox_beats_whitebox: SquareAttack's queries per image
    remedy_square_queries: int = 1000  # its remedy: 10x the check's own Square run
    remedy_iter_factor: int = 4  # not_converged's remedy: the iterations times this...
    remedy_restarts: int = 5  # ...with this many random restarts (Croce & Hein 2020 restart APGD 5 times)
    remedy_eot: tuple[int, int] = (8, 16)  # EoT draws per round: Athalye et al. 2018 use tens; 8 averages most noise out
    # where every loss of the model is masked (second round): HopSkipJump's iterations and queries per
    # gradient estimate (ART's defaults are 50 and 10,000: a CPU-sized budget), and the transfer remedy's
    # surrogate model (--surrogate; None: no transfer)
    remedy_hsj_iters: int = 20
    remedy_hsj_evals: int = 1000
    surrogate: str | None = None
    unbounded_iters: int = 50  # unbounded: PGD's steps of 0.01 over the whole pixel range (the remedies' twins too)

    def __post_init__(self):
        counts = (self.square_queries, self.unbounded_iters, self.remedy_square_queries, self.remedy_iter_factor,
                  self.remedy_restarts, *self.remedy_eot, self.remedy_hsj_iters, self.remedy_hsj_evals)
        if len(self.remedy_eot) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in counts):
            raise HBBenchError(f"check budgets must be positive integers (remedy_eot: one per round, two), got {self}")
        if self.surrogate is not None and (not isinstance(self.surrogate, str) or not self.surrogate.strip()):
            raise HBBenchError(f"--surrogate names a model (hbbench list models), got {self.surrogate!r}")

    def record(self) -> dict:
        """The manifest's ``check_budgets``: only the fields that differ from the defaults."""
        default = CheckBudgets()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items() if v != getattr(default, k)}

    @classmethod
    def from_record(cls, record: dict | None) -> "CheckBudgets":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in (record or {}).items()})


DEFAULT_BUDGETS = CheckBudgets()


@dataclass(frozen=True)
class SweepOptions:
    out: str | Path = "results"  # parent of run directories
    run: str | None = None  # run directory name; None: the grid's (Grid.run_name), so a command resumes its run
    executor: str = "local"  # local: this process or `workers` processes; ray: Ray tasks
    workers: int = 1  # processes (local) or CPUs of a local Ray instance
    address: str | None = None  # Ray cluster address (ray only)
    loader_workers: int = 0  # DataLoader processes decoding images
    threads: int | None = None  # torch threads per worker; None: the cores divided by the workers
    checks: str | None = "default"  # none, default, full, or check names
    check_samples: int = CHECK_SAMPLES
    check_budgets: CheckBudgets = DEFAULT_BUDGETS  # queries, iterations, restarts and EoT draws of checks and remedies
    require_finished: bool = False  # only add checks to a finished run (`hbbench check`)
    command: str | None = None  # the command line recorded in the manifest (default: sys.argv)
    save_examples: int | str | None = SAVE_EXAMPLES  # adversarial examples per cell: N, "all" (or None), 0

    def __post_init__(self):
        if self.workers < 1 or self.loader_workers < 0 or (self.threads is not None and self.threads < 1):
            raise HBBenchError("--workers and --threads must be >= 1, --loader-workers >= 0")
        if self.address and self.executor != "ray":
            raise HBBenchError("--address is for --executor ray")
        if isinstance(self.check_samples, bool) or not isinstance(self.check_samples, int) or self.check_samples < 1:
            raise HBBenchError(f"check samples must be a positive integer, got {self.check_samples!r}")
        parse_save_examples(self.save_examples)  # refused here, before any work

    @property
    def examples_kept(self) -> int | None:
        """The first N images of the run whose adversarial examples each cell keeps; None: every image."""
        return parse_save_examples(self.save_examples)

    def run_dir(self, grid) -> Path:
        return Path(self.out) / (self.run or grid.run_name)
