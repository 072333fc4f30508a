"""The sweep grid: a ``SweepSpec`` expands into ``Cell``s, one per (model, attack, budget, defense,
threat model), each with a stable id (a hash of every parameter that shapes its result)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from hbbench.errors import HBBenchError
from hbbench.parsing import parse_budget, parse_budgets, parse_item, parse_value, split_items  # noqa: F401
from hbbench.registry import refuse_unknown_params

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

    @property
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
        (hbbench.defenses.threat.crafts_against_defense)."""
        from hbbench.defenses.threat import crafts_against_defense

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
        from hbbench.defenses.threat import get_threat_model

        self.attacks = split_items(self.attacks)
        self.defenses = split_items(self.defenses)
        self.models = split_items(self.models)
        from hbbench.plugins import normalize

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

    def cells(self) -> list[Cell]:
        """The grid, checked against the registries; `none` is always included as the baseline. The
        commands expand a spec through hbbench.grid.resolve, which loads its plugins first."""
        from hbbench.attacks import ATTACKS, attack_norm, has_budget
        from hbbench.datasets import DATASETS
        from hbbench.defenses import DEFENSES
        from hbbench.models import MODELS

        models = [self._model(label, MODELS) for label in self.models]
        accepted = DATASETS.resolve(self.dataset)[0].params
        _validate_params("dataset", self.dataset, self.dataset_params,
                      {k: v for k, v in accepted.items() if k not in ("n", "seed")})  # those are --n and --seed
        # Which images --n draws is part of a cell: a run made before stratified sampling (first N)
        # must not be resumed with stratified draws, so the default is written into the cell.
        data_params = {**({"sample": accepted["sample"]} if "sample" in accepted else {}), **self.dataset_params}
        defenses = ["none"] + [d for d in self.defenses if d != "none"]
        cells = []
        for (m_label, m_name, m_params), a_label in ((m, a) for m in models for a in self.attacks):
            a_name, a_params = parse_item(a_label)
            entry, _ = ATTACKS.resolve(a_name)
            _validate_params("attack", a_label, a_params, entry.params)
            budgets = self.eps if has_budget(a_name) and "eps" not in a_params else [a_params.get("eps")]
            if attack_norm(a_name, a_params) == "inf":
                _refuse_linf_beyond_pixels(a_label, budgets)
            for eps in budgets:
                for d_label in defenses:
                    d_name, d_params = parse_item(d_label)
                    _validate_params("defense", d_label, d_params, DEFENSES.resolve(d_name)[0].params)
                    for threat in self.threat_models:
                        cells.append(Cell(m_name, self.dataset, self.n, self.seed, a_label, a_name,
                                          _freeze(a_params), eps, d_label, d_name, _freeze(d_params), threat,
                                          _freeze(m_params), _freeze(data_params), m_label))
        return cells

    def _model(self, label: str, registry) -> tuple[str, str, dict]:
        """(label, registry name, parameters) of one model of the grid: its own NAME[key=value] params
        over ``model_params`` (the command line's --weights, --download, ...) where the model takes them."""
        name, own = parse_item(label)
        entry, _ = registry.resolve(name)
        _validate_params("model", label, own, entry.params)
        shared = {k: v for k, v in self.model_params.items() if k in entry.params}
        return label, name, {**shared, **own}


def with_current_keys(raw: dict) -> dict:
    """A spec mapping with today's key names: ``model`` of one-model specs written before model grids
    becomes ``models`` (a ``models`` also given wins)."""
    if "model" not in raw:
        return raw
    raw = dict(raw)
    raw.setdefault("models", raw.pop("model"))
    return raw


def _validate_params(kind, label, given: dict, accepted: dict) -> None:
    refuse_unknown_params(kind, label, given, accepted)
    for key, value in given.items():  # a value of the wrong type fails here, not deep inside ART
        default = accepted[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
                and abs(value) != float("inf")
        else:
            ok = True
        if not ok:
            want = {bool: "true or false", int: "an integer", float: "a number"}[type(default)]
            raise HBBenchError(f"{kind} '{label}': {key} must be {want}, got {value!r}")
        if key == "eps" and value is not None:
            parse_budget(value)


def _refuse_linf_beyond_pixels(label: str, budgets) -> None:
    """Pixels lie in [0, 1]: an L-inf budget above 1 is a whole-range attack, almost always a budget
    typed in 0-255 units. L2 budgets above 1 are ordinary and stay valid."""
    for eps in budgets:
        if eps is not None and eps > 1:
            raise HBBenchError(f"attack '{label}': an L-inf budget of {eps:g} exceeds the pixel range [0, 1]; "
                               f"did you mean {eps:g}/255?")


def _freeze(params: dict) -> tuple:
    return tuple(sorted(params.items()))
