"""How a budget and a table read wherever hbbench prints them: one ε label, one Markdown table."""
from __future__ import annotations

import inspect
import math


def eps_label(eps) -> str:
    """'4/255' (budgets are shown as fractions of the pixel range), '—' for an attack without one."""
    if eps is None or (isinstance(eps, float) and math.isnan(eps)):
        return "—"
    return f"{eps * 255:g}/255"


def param_label(key: str, value) -> str:
    """A registered entry's default as `hbbench list` shows it: budgets as fractions of 255."""
    if value is inspect.Parameter.empty:
        return "<required>"
    if isinstance(value, float) and key.startswith("eps"):
        frac = value * 255
        return eps_label(value) if abs(frac - round(frac)) < 1e-9 and 0 < value < 1 else f"{value:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def markdown_table(header, rows) -> str:
    """A Markdown table of cells the caller has already formatted (and escaped, where it needs to)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
