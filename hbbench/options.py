"""How a sweep runs, as opposed to what it computes (the spec): one frozen object that travels from
the command line through ``hbbench.api.sweep`` to the executor, checked once, here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hbbench.errors import HBBenchError

CHECK_SAMPLES = 10  # images the costly checks attack again: the first 10 of the run


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
    require_finished: bool = False  # only add checks to a finished run (`hbbench check`)
    command: str | None = None  # the command line recorded in the manifest (default: sys.argv)

    def __post_init__(self):
        if self.workers < 1 or self.loader_workers < 0 or (self.threads is not None and self.threads < 1):
            raise HBBenchError("--workers and --threads must be >= 1, --loader-workers >= 0")
        if self.address and self.executor != "ray":
            raise HBBenchError("--address is for --executor ray")
        if isinstance(self.check_samples, bool) or not isinstance(self.check_samples, int) or self.check_samples < 1:
            raise HBBenchError(f"check samples must be a positive integer, got {self.check_samples!r}")

    def run_dir(self, grid) -> Path:
        return Path(self.out) / (self.run or grid.run_name)
