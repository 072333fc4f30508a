"""What the checks read from a run: its cells, the cells the costly checks added, their summaries and
per-image records (loaded once, on first use)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import pandas as pd

from hbbench.audit import is_invalid
from hbbench.execution import Context
from hbbench.spec import Cell


@dataclass
class Evidence:
    cells: list[Cell]  # the run's grid
    auxiliary: dict[str, list[tuple[Cell, Cell | None]]]  # check -> (added cell, the grid cell it shadows)
    summaries: dict[str, dict]  # cell id -> stored summary
    load_records: object  # cell id -> per-image records (DataFrame) or None
    check_samples: int  # the costly checks' images: samples [0, check_samples) of the run
    # cell -> the loaded model and data of its (model, data) pair, at the grid's batch size and device:
    # what the checks that attack in process (binarization) run on; the caller (hbbench.api) hands it in
    context: Callable[[Cell], Context] | None = None
    _records: dict = field(default_factory=dict)

    def records(self, cell: Cell) -> pd.DataFrame | None:
        if cell.id not in self._records:
            self._records[cell.id] = self.load_records(cell.id) if cell.id in self.summaries else None
        return self._records[cell.id]

    def fooled(self, cell: Cell, first: int | None = None, on: str = "attacked") -> np.ndarray | None:
        """Per image (in sample order): the model is wrong on the adversarial input. ``on="attacked"``:
        the model the attack optimised against (the undefended one under oblivious, so an attack's
        own success is compared like with like, not its transfer); ``"defended"``: the defended model.
        ``first``: only samples below it (the costly checks' subsample)."""
        r = self.records(cell)
        if r is None:
            return None
        r = r.sort_values("sample")
        if first is not None:
            r = r[r["sample"] < first]
        column = "def_adv_pred" if on == "defended" or cell.crafts_against_defense else "adv_pred"
        return (r[column] != r["label"]).to_numpy()

    def done(self, cell: Cell) -> bool:
        return cell.id in self.summaries

    def invalid(self, cell: Cell) -> bool:
        """Whether ``cell``'s examples failed the audit (hbbench.audit): outside the budget, the pixel range,
        or not finite."""
        return is_invalid(self.summaries.get(cell.id))

    def valid_only(self) -> "Evidence":
        """This evidence without the cells whose examples failed the audit, in the grid and beside it: what
        every comparison and the worst case read (the ``budget`` check alone reads them)."""
        bad = {cid for cid, s in self.summaries.items() if is_invalid(s)}
        if not bad:
            return self
        return replace(self, cells=[c for c in self.cells if c.id not in bad],
                       auxiliary={check: [(a, b) for a, b in pairs if a.id not in bad]
                                  for check, pairs in self.auxiliary.items()},
                       summaries={cid: s for cid, s in self.summaries.items() if cid not in bad},
                       _records=self._records)

    def per_model(self) -> list["Evidence"]:
        """This evidence split by model: checks and the worst case compare cells of one model only."""
        keys = list(dict.fromkeys(c.model_key for c in self.cells))
        return [replace(self, cells=[c for c in self.cells if c.model_key == key],
                        auxiliary={check: [(a, b) for a, b in pairs if a.model_key == key]
                                   for check, pairs in self.auxiliary.items()},
                        _records=self._records) for key in keys]

    def groups(self, *keys: str) -> dict[tuple, list[Cell]]:
        """The grid's cells grouped by attributes, in grid order."""
        out: dict[tuple, list[Cell]] = {}
        for c in self.cells:
            out.setdefault(tuple(getattr(c, k) for k in keys), []).append(c)
        return out
