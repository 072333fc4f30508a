import io
import os
import shlex
import shutil
from collections import Counter
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

os.environ.setdefault("MPLBACKEND", "Agg")



def pytest_sessionstart(session):
    """Torch's threads: one per pytest-xdist worker (make test runs one worker per core, so the workers
    share the cores instead of fighting over them), every core in a plain run. The xdist controller runs
    no test: it imports no torch, which would hold the workers back by 5 s."""
    config = session.config
    worker = hasattr(config, "workerinput")
    if not worker and getattr(config.option, "numprocesses", None):
        return
    import torch

    torch.set_num_threads(1 if worker else max(1, os.cpu_count() or 1))


@pytest.hookimpl(trylast=True)  # after -m has deselected what it deselects
def pytest_collection_modifyitems(config, items):
    """Files with the most slow tests first, then those with the most tests (the order within a file kept).
    pytest-xdist hands whole files to its workers in this order (the Makefile's --no-loadscope-reorder: its
    own order, by test count alone, put test_packaging's one 29 s test last, beside an idle worker), so the
    long files start early and the short ones fill the end."""
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    tests = Counter(item.path for item in items)
    items.sort(key=lambda item: (-slow[item.path], -tests[item.path]))


SHARED_200 = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "imagenet-samples-200")


@pytest.fixture(scope="session")
def model():
    from hbbench.models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def classifier(model):
    from hbbench.classifier import make_classifier

    return make_classifier(model, device="cpu")


@pytest.fixture(scope="session")
def data4():
    """The first four embedded ImageNet images (the model gets three right)."""
    from hbbench.datasets import load_dataset

    return load_dataset("imagenet-samples", n=4)


def top1(classifier, x, y) -> float:
    return float((classifier.predict(x).argmax(1) == y).mean())


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- shared helpers (issue 31): the tiny plugin model, the in-process CLI, planted defenses ----------

ROOT = Path(__file__).resolve().parents[1]
TINY_PLUGIN = str(ROOT / "examples" / "tiny_cnn.py")
TINY_SIZE = 32  # px: the fast tier's images are the embedded ones scaled down, so every array is 49x smaller
TINY_MODEL = f"tiny_cnn[weights=random,size={TINY_SIZE}]"  # the example plugin's untrained CNN: seeded, cheap
# The fast tier's grid: the tiny CNN on 2 of the ``tiny_data`` images (a SweepSpec mapping; ``tiny_flags``: the CLI's).
TINY = dict(models=[TINY_MODEL], plugins=[TINY_PLUGIN], n=2, batch_size=2, device="cpu", seed=0)


def tiny_cnn():
    """TINY_MODEL as a LoadedModel (the example plugin loaded)."""
    from hbbench.models import load_model
    from hbbench.plugins import load_refs

    load_refs([TINY_PLUGIN])
    return load_model("tiny_cnn", weights="random", size=TINY_SIZE)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> str:
    """'npz:PATH': the first four embedded ImageNet images, scaled to TINY_SIZE px, labelled with the tiny
    CNN's own predictions, so the untrained model classifies every one (clean top-1 1.0, model_sanity
    passes) and an attack has something to flip."""
    import torch
    from torch.nn.functional import interpolate

    from hbbench.classifier import make_classifier
    from hbbench.datasets import load_dataset

    full = torch.from_numpy(load_dataset("imagenet-samples", n=4).x)
    x = interpolate(full, size=(TINY_SIZE, TINY_SIZE), mode="bilinear", antialias=True).clamp(0, 1).numpy()
    y = make_classifier(tiny_cnn(), device="cpu").predict(x).argmax(1)
    path = tmp_path_factory.mktemp("tiny-data") / "tiny4.npz"
    np.savez(path, x=x, y=y.astype(np.int64))
    return f"npz:{path}"


@pytest.fixture(scope="session")
def tiny(tiny_data) -> dict:
    return dict(TINY, dataset=tiny_data)


@pytest.fixture(scope="session")
def tiny_flags(tiny_data) -> list[str]:
    return ["--plugin", TINY_PLUGIN, "--model", TINY_MODEL, "--data", tiny_data, "--n", "2", "--batch-size", "2",
            "--device", "cpu", "--seed", "0"]


def small_budgets():
    """Check and remedy budgets a test can afford (the defaults: hbbench.options.CheckBudgets)."""
    from hbbench.options import CheckBudgets

    return CheckBudgets(square_queries=10, unbounded_iters=20, remedy_square_queries=20, remedy_iter_factor=2, remedy_restarts=2,
                        remedy_eot=(2, 3), remedy_hsj_iters=2, remedy_hsj_evals=20)


def cli_runner() -> CliRunner:
    """stdout and stderr apart: click >= 8.2 always keeps them apart, 8.1 needs mix_stderr=False."""
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def invoke(*args) -> tuple[int, str, list[str]]:
    """(exit code, stdout, stderr lines) of `hbbench ARGS` run in-process; fails on any traceback."""
    from hbbench.cli import main

    result = cli_runner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr.strip().splitlines()


@contextmanager
def working_directory(path):
    """``cd path`` for the block (contextlib.chdir is Python 3.11's; we support 3.10)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_doc_commands(cwd, commands: list[str]) -> dict[str, str]:
    """A doc's ``$ hbbench …`` lines as a user types them, in ``cwd`` and in order, in this process (each
    command is click's, as in a shell; a fresh process is not what a walk-through tests): each must exit
    0. Returns each command's stdout."""
    outputs = {}
    with working_directory(cwd):
        for command in commands:
            argv = shlex.split(command)
            assert argv[0] == "hbbench", f"the doc runs an unexpected program: {command}"
            code, stdout, stderr = invoke(*argv[1:])
            assert code == 0, f"{command}\n{stdout[-2000:]}\n" + "\n".join(stderr[-20:])
            outputs[command] = stdout
    return outputs


def run_doc_python(cwd, source: str, doc) -> str:
    """A doc's Python blocks (``source``) as a notebook runs them, in ``cwd``, in this process: what they print."""
    printed = io.StringIO()
    with working_directory(cwd), redirect_stdout(printed):
        exec(compile(source, str(doc), "exec"), {"__name__": "__main__"})
    return printed.getvalue()


@contextmanager
def registered(source: str = "tests"):
    """Entries registered inside this block, through the registries' public scoping, are removed after it."""
    from hbbench.registry import registering_as, unregister_source

    try:
        with registering_as(source):
            yield
    finally:
        unregister_source(source)


@pytest.fixture
def planted_defense():
    """`rounding_test`: a defense that masks the gradient (registered for the test only)."""
    from hbbench.defenses import DEFENSES
    from tests.planted import Rounding

    with registered("tests: planted defense"):
        DEFENSES.register("rounding_test", "planted gradient masking (tests only)")(lambda classifier: Rounding())
        yield "rounding_test"


@pytest.fixture
def saturated_model(on):
    """`saturated_test`: ``on``'s model with its logits scaled until float32's softmax is one-hot: EfficientNet-
    Lite0 x 1000; the tiny CNN x 100,000 (its untrained logits lie 0.04-0.07 apart: x 1000 leaves e^-40,
    not 0). Registered for the test only."""
    from dataclasses import replace

    from hbbench.models import MODELS, load_model
    from tests.planted import Scaled

    base = tiny_cnn() if on else load_model("efficientnet_lite0")
    with registered("tests: saturated model"):
        factor = 1e5 if on else 1000.0
        MODELS.register("saturated_test", "logits scaled to a one-hot softmax (tests only)")(
            lambda: replace(base, name="saturated_test", module=Scaled(base.module, factor)))
        yield "saturated_test"


TINY_RUN_FLAGS = ["--attacks", "fgsm,pgd[max_iter=3]", "--defense", "jpeg", "--eps", "2/255,4/255",
                  "--threat", "oblivious,bpda"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_flags) -> Path:
    """One finished tiny run (``tiny_flags`` + TINY_RUN_FLAGS through the CLI in-process, default checks:
    fgsm and PGD-3 x none/jpeg x 2/255, 4/255 x oblivious/bpda on 2 images), made once per session.
    Tests that need a run copy it (``tiny_run_copy``) instead of sweeping again, and never write into it."""
    out = tmp_path_factory.mktemp("tiny-run")
    code, _, err = invoke("sweep", *tiny_flags, *TINY_RUN_FLAGS, "--out", out, "--run", "tiny")
    assert code == 0, err
    return out / "tiny"


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    run = tmp_path / "results" / "tiny"
    shutil.copytree(tiny_run, run)
    return run


@pytest.fixture(params=["tiny", pytest.param("efficientnet", marks=pytest.mark.slow)])
def on(request, tiny) -> dict:
    """The spec keys of the model a test runs on: the tiny CNN on its own labelled images (fast tier),
    or EfficientNet-Lite0 on the embedded ImageNet images (slow tier). Tests set ``n`` themselves."""
    return dict(tiny) if request.param == "tiny" else {}


@pytest.fixture
def budgets(on):
    """The check budgets for ``on``: small ones on the tiny CNN, the documented defaults on the real model.
    For tests whose claim depends on the budgets: honest settings raise no failing check at the budgets
    a user runs."""
    from hbbench.options import CheckBudgets

    return small_budgets() if on else CheckBudgets()


@pytest.fixture
def remedy_budgets():
    """The check budgets for a test that a remedy repairs a planted flaw, on either model: small ones. The
    claim is about the mechanism (the check fails, the planned remedy runs and is measured, the figure
    falls to the honest attack's), which the documented budgets would only make slower to show (a
    remedy's iterations x restarts, Square's queries and EoT's draws are options, CheckBudgets)."""
    return small_budgets()


@pytest.fixture
def on_flags(on, tiny_flags) -> list[str]:
    """``on`` as command-line flags (``--n`` given by the test)."""
    i = tiny_flags.index("--n")
    return tiny_flags[:i] + tiny_flags[i + 2:] if on else []


@pytest.fixture(scope="session")
def tiny_classifier():
    """The tiny CNN as an ART classifier (the example plugin loaded)."""
    from hbbench.classifier import make_classifier

    return make_classifier(tiny_cnn(), device="cpu")


@pytest.fixture(scope="session")
def other_tiny(tmp_path_factory) -> str:
    """A second model for model grids: the tiny CNN with weights of another seed, from a checkpoint (the
    plugin's weights=PATH). ``tiny_data`` is labelled by the first, so this one is right on none of it."""
    import torch

    architecture = type(tiny_cnn().module)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        state = architecture().state_dict()
    path = tmp_path_factory.mktemp("other-tiny") / "tiny_cnn_seed1.pt"
    torch.save(state, path)
    return f"tiny_cnn[weights={path},size={TINY_SIZE}]"
