"""Plugins: a user's own models, datasets, attacks and defenses in the grid, registered with the same
decorators hbbench uses for its own (``@DEFENSES.register(...)``; docs/plugins.md).

A plugin is a Python file (``--plugin my_defense.py``), an importable module (``--plugin
my_pkg.defenses``), or a module an installed package names in the entry-point group
``hbbench.plugins``. The driver and every worker (pool processes, Ray tasks) import the same ones:
a file plugin travels as its source text with the work, so a Ray node needs no copy of the file.
Each is identified by a content hash, which the run's manifest records; resuming a run whose
plugins changed is refused.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
from importlib.metadata import entry_points
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from hbbench.errors import HBBenchError
from hbbench.registry import DuplicateName, registering_as, unregister_source

ENTRY_POINT_GROUP = "hbbench.plugins"


@dataclass(frozen=True)
class Plugin:
    ref: str  # a file plugin's absolute path, or a module name
    kind: str  # "file", "module" or "entry point"
    sha256: str  # of the file's (or module's file's) content
    source: str | None = None  # a file plugin's text, imported from this in workers

    def record(self) -> dict:
        """What the manifest keeps of it."""
        return {"plugin": self.ref, "kind": self.kind, "sha256": self.sha256}


_LOADED: dict[str, str] = {}  # ref -> sha256 of what this process imported


def is_file_ref(ref: str) -> bool:
    return ref.endswith(".py") or "/" in ref


def normalize(ref: str) -> str:
    """A file plugin as an absolute path (so a resumed or checked run finds it from anywhere)."""
    ref = str(ref).strip()
    return str(Path(ref).expanduser().resolve()) if is_file_ref(ref) else ref


def resolve(refs) -> list[Plugin]:
    """The plugins ``refs`` name, then those installed packages declare, each with its content hash;
    a missing file or module is one clear error."""
    plugins = [_file(ref) if is_file_ref(ref) else _module(ref, "module") for ref in map(normalize, refs)]
    given = {p.ref for p in plugins}
    return plugins + [p for p in _entry_point_plugins() if p.ref not in given]


def _file(ref: str) -> Plugin:
    path = Path(ref)
    if not path.is_file():
        raise HBBenchError(f"plugin file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HBBenchError(f"cannot read plugin {path}: {exc}") from None
    return Plugin(ref, "file", _sha(text), text)


def _module(name: str, kind: str) -> Plugin:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise HBBenchError(f"plugin module '{name}' cannot be found (not installed, or not on the Python path); "
                           "a file plugin is given by its path, e.g. --plugin ./my_defense.py")
    origin = Path(spec.origin) if spec.origin and spec.origin not in ("built-in", "frozen") else None
    digest = _sha(origin.read_text()) if origin is not None and origin.is_file() else "unknown"
    return Plugin(name, kind, digest)


def _entry_point_plugins() -> list[Plugin]:
    return [_module(ep.value.partition(":")[0].strip(), "entry point") for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load(plugins: list[Plugin]) -> None:
    """Import ``plugins`` into this process's registries, once per content: a plugin already imported
    is skipped; one whose content changed has its old registrations removed first. The caller has
    imported hbbench's own registries (hbbench.grid and the runner do), so a plugin reusing one of
    their names is refused, not shadowing."""
    for plugin in plugins:
        if _LOADED.get(plugin.ref) == plugin.sha256:
            continue
        unregister_source(plugin.ref)
        try:
            with registering_as(plugin.ref):
                _import(plugin)
        except DuplicateName as exc:
            unregister_source(plugin.ref)
            raise HBBenchError(f"plugin {plugin.ref}: {exc}; give it another name") from None
        except HBBenchError:
            unregister_source(plugin.ref)
            raise
        except Exception as exc:  # noqa: BLE001 - any error in a user's file is reported as that plugin's
            unregister_source(plugin.ref)
            raise HBBenchError(f"plugin {plugin.ref} raised {type(exc).__name__} on import: "
                               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else '(no message)'}") from None
        _LOADED[plugin.ref] = plugin.sha256


def unload(ref: str) -> None:
    """Remove what the plugin ``ref`` registered, and forget it: loading it again imports it again (a
    long-lived process, such as a notebook or a test session, that ran a command with ``--plugin``)."""
    ref = normalize(ref)
    unregister_source(ref)
    _LOADED.pop(ref, None)


def load_refs(refs) -> list[Plugin]:
    """Resolve and load: what the command line and the sweep do with ``--plugin`` / ``plugins:``."""
    plugins = resolve(refs)
    load(plugins)
    return plugins


def _import(plugin: Plugin) -> None:
    if plugin.source is None:  # a module: importlib, and again if this process imported an older version
        module = sys.modules.get(plugin.ref)
        if module is None:
            importlib.import_module(plugin.ref)
        else:
            importlib.reload(module)
        return
    name = f"hbbench_plugin_{Path(plugin.ref).stem}_{plugin.sha256[:8]}"
    module = types.ModuleType(name)
    module.__file__ = plugin.ref
    sys.modules[name] = module  # pickling and dataclasses look a module up by name
    try:
        exec(compile(plugin.source, plugin.ref, "exec"), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise


def refuse_changed(root, old: list[dict] | None, new: list[Plugin]) -> None:
    """A run's cells were computed with its plugins: resuming it with other plugin code would mix results."""
    if old is None:
        return
    before = {p["plugin"]: p["sha256"] for p in old}
    after = {p.ref: p.sha256 for p in new}
    diff = [f"{ref} changed (sha256 {before[ref][:12]} -> {after[ref][:12]})" for ref in before
            if ref in after and before[ref] != after[ref]]
    diff += [f"{ref} added" for ref in after if ref not in before]
    diff += [f"{ref} removed" for ref in before if ref not in after]
    if diff:
        raise HBBenchError(f"{root} holds a run made with other plugins ({'; '.join(diff)}); use another --run name "
                           "or restore the plugin")
