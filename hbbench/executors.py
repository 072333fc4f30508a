"""Executors run attack groups (lists of cells sharing one attack run) and stream each finished
cell into the run store. ``local`` runs them in this process, in grid order."""
from __future__ import annotations

from typing import Callable

from hbbench.errors import HBBenchError
from hbbench.runner import run_group
from hbbench.spec import Cell
from hbbench.store import RunStore

EXECUTORS: dict[str, Callable] = {}


def executor(name: str):
    def deco(fn):
        EXECUTORS[name] = fn
        return fn
    return deco


@executor("local")
def run_local(groups: list[list[Cell]], store: RunStore, batch_size: int, device: str, on_event, **_) -> None:
    for group in groups:
        run_group(group, store, batch_size=batch_size, device=device, on_event=on_event)


def get_executor(name: str) -> Callable:
    if name not in EXECUTORS:
        raise HBBenchError(f"unknown executor '{name}'; valid choices: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]
