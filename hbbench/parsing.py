"""The text of a grid: budgets ('4/255'), comma lists outside brackets, NAME[key=value,...] items and
their values, with one clear error for anything else. Re-exported by hbbench.spec."""
from __future__ import annotations

import re
from fractions import Fraction

import yaml

from hbbench.errors import HBBenchError

ITEM = re.compile(r"^\s*([A-Za-z0-9_:./~\-]+)\s*(?:\[(.*)\])?\s*$")


def parse_budget(text: str) -> float:
    """'4/255' or '0.0157' -> float > 0, with a clear error for anything else."""
    s = str(text).strip()
    try:
        value = float(Fraction(s)) if "/" in s else float(s)
    except (ValueError, ZeroDivisionError, OverflowError):  # OverflowError: a fraction beyond float range
        raise HBBenchError(f"bad budget '{s}': use a positive number or fraction like 4/255") from None
    if not value > 0 or value != value or value == float("inf"):
        raise HBBenchError(f"bad budget '{s}': it must be a positive, finite number")
    return value


def parse_budgets(text) -> tuple[float, ...]:
    parts = text if isinstance(text, (list, tuple)) else str(text).split(",")
    values = tuple(parse_budget(p) for p in parts if str(p).strip())
    if not values:
        raise HBBenchError("no budget given: use e.g. --eps 2/255,4/255")
    return values


def split_items(text) -> list[str]:
    """Split 'a,b[x=1,y=2],c' on the commas outside brackets."""
    if isinstance(text, (list, tuple)):
        return [str(t).strip() for t in text if str(t).strip()]
    items, depth, cur = [], 0, ""
    for ch in str(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    items.append(cur.strip())
    return [i for i in items if i]


def parse_item(text: str) -> tuple[str, dict]:
    """'jpeg[quality=50]' -> ('jpeg', {'quality': 50}); values are YAML scalars."""
    m = ITEM.match(text)
    if not m:
        raise HBBenchError(f"cannot parse '{text}': expected NAME or NAME[key=value,...]")
    params = {}
    for pair in split_items(m.group(2) or ""):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HBBenchError(f"cannot parse parameter '{pair}' in '{text}': expected key=value")
        params[key.strip()] = parse_value(value)
    return m.group(1), params


def parse_value(value: str):
    v = value.strip()
    if re.fullmatch(r"-?\d+/\d+", v):
        return parse_budget(v) if not v.startswith("-") else -parse_budget(v[1:])
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v
