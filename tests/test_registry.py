"""The registry every kind shares: what `hbbench list` shows is what the factory takes, names and
prefixes resolve or fail with the valid choices named, and declared metadata comes back as given."""
import inspect

import pytest

from hbbench.errors import HBBenchError, UnknownName
from hbbench.registry import Registry


@pytest.fixture
def reg():
    r = Registry("widget", skip=1)

    @r.register("plain", "a plain widget", colour="red")
    def plain(owner, size: int = 3, *, shiny: bool = False):
        return ("plain", owner, size, shiny)

    @r.register("folder", "a widget from a path", prefix=True)
    def folder(owner, path, depth: int = 1):
        return ("folder", owner, path, depth)

    return r


def test_params_come_from_the_signature_without_caller_supplied_arguments(reg):
    assert reg.resolve("plain")[0].params == {"size": 3, "shiny": False}
    assert reg.resolve("folder:x")[0].params == {"depth": 1}  # owner and the prefix argument are not user params


def test_create_passes_the_prefix_argument_and_parameters(reg):
    assert reg.create("plain", "me", size=5) == ("plain", "me", 5, False)
    assert reg.create("folder:/data/a:b", "me", depth=2) == ("folder", "me", "/data/a:b", 2)


def test_meta_is_declared_at_registration_and_read_only(reg):
    entry = reg.resolve("plain")[0]
    assert entry.meta == {"colour": "red"} and reg.resolve("folder:x")[0].meta == {}
    with pytest.raises(TypeError):
        entry.meta["colour"] = "blue"


@pytest.mark.parametrize("name", ["nope", "plain:x", "folder", "folder:"])
def test_unknown_names_and_misused_prefixes_name_the_valid_choices(reg, name):
    with pytest.raises(UnknownName) as info:
        reg.resolve(name)
    assert "plain" in str(info.value) and "folder:<arg>" in str(info.value)
    assert name not in reg


def test_unknown_parameter_is_refused_with_what_it_takes(reg):
    with pytest.raises(HBBenchError, match="no parameter colour; it takes: size, shiny"):
        reg.create("plain", "me", colour="red")


def test_a_name_registers_once(reg):
    with pytest.raises(HBBenchError, match="'plain' is already registered by hbbench"):
        reg.register("plain", "again")(lambda owner: None)


def test_required_parameters_show_as_empty(reg):
    @reg.register("needy", "needs a value")
    def needy(owner, value):
        return value

    assert reg.resolve("needy")[0].params == {"value": inspect.Parameter.empty}
