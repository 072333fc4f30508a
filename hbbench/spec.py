"""The sweep grid: a ``SweepSpec`` expands into ``Cell``s, one per (model, attack, budget, defense,
threat model), each with a stable id (a hash of every parameter that shapes its result)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path

import yaml

from hbbench.errors import HBBenchError
from hbbench.parsing import parse_budgets, parse_item, split_items
from hbbench.plugins import normalize
from hbbench.threats import crafts_against_defense, get_threat_model

DEFAULT_ATTACKS = ("fgsm", "pgd", "cw")
DEFAULT_DEFENSES = ("heatblur", "jpeg")
DEFAULT_MODEL = "efficientnet_lite0"


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Cell:
    """One grid point. ``attack``/``defense`` are the labels the user wrote (e.g. 'jpeg[quality=50]')."""
    model: str
    dataset: str
    n: int | None
    seed: int
    attack: str
    attack_name: str
    attack_params: tuple
    eps: float | None
    defense: str
    defense_name: str
    defense_params: tuple
    threat_model: str
    model_params: tuple = ()
    dataset_params: tuple = ()
    model_label: str = ""  # the model as the user wrote it, e.g. 'torchvision:resnet18[weights=r18.pt]'

    @cached_property  # asked thousands of times per sweep; asdict copies every field (a frozen cell never changes)
    def id(self) -> str:
        d = asdict(self)
        for label in ("attack", "defense", "model_label"):  # display only; names + params define the cell
            d.pop(label)
        return stable_hash(d)

    @property
    def model_key(self) -> tuple:
        """What the model of this cell is: cells sharing it share a loaded model."""
        return (self.model, self.model_params)

    @property
    def crafts_against_defense(self) -> bool:
        """Whether the adversarial examples are crafted against the defended model
        (hbbench.threats.crafts_against_defense)."""
        return crafts_against_defense(self.defense, self.threat_model)

    @property
    def scored_on_attacked_model(self) -> bool:
        """Whether the cell's outcome is read on the model its attack computed gradients on: the
        undefended model itself, or the defense under bpda or adaptive (never an oblivious defense)."""
        return self.defense_name == "none" or self.crafts_against_defense

    @property
    def attack_target(self) -> tuple:
        """What the attack is computed against; cells sharing it share adversarial examples."""
        if not self.crafts_against_defense:
            return ("undefended",)
        return (self.defense_name, self.defense_params, self.threat_model)

    @property
    def attack_key(self) -> tuple:
        """What the attack run is (and what seeds it); the same for every model, so models are compared
        on the same random starts."""
        return (self.attack_name, self.attack_params, self.eps, self.attack_target)

    @property
    def attack_run(self) -> tuple:
        """Cells sharing this share one attack run: same model, same attack key."""
        return (self.model_key, self.attack_key)


@dataclass
class SweepSpec:
    attacks: list[str] = field(default_factory=lambda: list(DEFAULT_ATTACKS))
    defenses: list[str] = field(default_factory=lambda: list(DEFAULT_DEFENSES))
    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    dataset: str = "imagenet-samples"
    eps: list[float] = field(default_factory=lambda: [4 / 255])
    threat_models: list[str] = field(default_factory=lambda: ["oblivious", "bpda"])
    n: int | None = 20
    batch_size: int = 32
    shard_size: int | None = None
    device: str = "auto"
    seed: int = 0
    model_params: dict = field(default_factory=dict)
    dataset_params: dict = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)  # files or modules registering entries (hbbench.plugins)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "SweepSpec":
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except OSError as exc:
            raise HBBenchError(f"cannot read config {p}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise HBBenchError(f"config {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise HBBenchError(f"config {p} must be a mapping of sweep options")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(raw, source=str(p))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "spec") -> "SweepSpec":
        known = {f.name for f in fields(cls)}
        raw = with_current_keys(raw)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise HBBenchError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        spec = cls(**raw)
        spec.validate(source)
        return spec

    def validate(self, source: str = "spec") -> None:
        self.attacks = split_items(self.attacks)
        self.defenses = split_items(self.defenses)
        self.models = split_items(self.models)
        self.plugins = [normalize(p) for p in split_items(self.plugins)]
        self.threat_models = split_items(self.threat_models)
        self.eps = list(parse_budgets(self.eps))
        for key, kind in (("n", int), ("batch_size", int), ("seed", int)):
            value = getattr(self, key)
            if key == "n" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, kind):
                raise HBBenchError(f"{source}: {key} must be an integer, got {value!r}")
        if self.n is not None and self.n < 1:
            raise HBBenchError(f"{source}: n must be >= 1, got {self.n}")
        if self.shard_size is not None and (isinstance(self.shard_size, bool) or not isinstance(self.shard_size, int)
                                            or self.shard_size < 1):
            raise HBBenchError(f"{source}: shard_size must be a positive integer, got {self.shard_size!r}")
        if self.batch_size < 1:
            raise HBBenchError(f"{source}: batch_size must be >= 1, got {self.batch_size}")
        for key in ("dataset", "device"):
            if not isinstance(getattr(self, key), str):
                raise HBBenchError(f"{source}: {key} must be a string, got {getattr(self, key)!r}")
        if self.dataset.rstrip().endswith("]"):  # 'imagefolder:X[sample=first]'; a bare path may hold any character
            self.dataset, params = parse_item(self.dataset)
            self.dataset_params = {**self.dataset_params, **params}
        if not self.attacks:
            raise HBBenchError(f"{source}: no attack given")
        if not self.models:
            raise HBBenchError(f"{source}: no model given")
        repeated = sorted({m for m in self.models if self.models.count(m) > 1})
        if repeated:
            raise HBBenchError(f"{source}: model {', '.join(repeated)} given twice")
        for t in self.threat_models:
            get_threat_model(t)
        if not self.threat_models:
            raise HBBenchError(f"{source}: no threat model given")

    def to_dict(self) -> dict:
        return asdict(self)


def with_current_keys(raw: dict) -> dict:
    """A spec mapping with today's key names: ``model`` of one-model specs written before model grids
    becomes ``models`` (a ``models`` also given wins)."""
    if "model" not in raw:
        return raw
    raw = dict(raw)
    raw.setdefault("models", raw.pop("model"))
    return raw
