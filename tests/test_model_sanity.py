"""model_sanity and explicit weights: an untrained network is benchmarked only on purpose
(weights=random), and then the check says it does not classify the images, every verdict of it reads
"unverified", and the report says so before anything else. The embedded model passes; so does the
embedded network normalised twice, which still classifies (what the check does not catch)."""
import json

import pandas as pd
import pytest
import torch
from torch import nn

from tests.conftest import cli_runner

from hbbench.api import sweep
from hbbench.cli import main
from hbbench.models import MODELS, IMAGENET_MEAN, IMAGENET_STD, LoadedModel, load_model
from hbbench.registry import registering_as, unregister_source
from hbbench.report import build_report
from hbbench.spec import SweepSpec

UNVERIFIED = ("unverified: the model does not classify these images (clean top-1 0.00 on 2 images); check its "
              "weights, its normalisation and the dataset's class indices")


def sanity(run_dir) -> pd.DataFrame:
    checks = pd.read_csv(run_dir / "checks.csv")
    return checks[checks.check == "model_sanity"]


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("random")
    result = cli_runner().invoke(main, ["sweep", "--model", "timm:resnet18[weights=random]", "--attacks", "fgsm",
                                        "--defense", "jpeg", "--threat", "oblivious,bpda", "--n", "2",
                                        "--out", str(out), "--run", "r"])
    assert result.exit_code == 0, result.stderr
    return out / "r", result.stdout


def test_a_random_weights_run_completes_and_fails_model_sanity(random_run):
    run, stdout = random_run
    row = sanity(run)
    assert row.status.tolist() == ["fail"] and row.model.tolist() == ["timm:resnet18[weights=random]"]
    assert "unverified: " + row.reason.iloc[0] == UNVERIFIED
    assert "0 of 2 right; chance 1/1000" in row.numbers.iloc[0]
    assert UNVERIFIED in stdout.splitlines()  # the CLI's verdict line, as the report words it
    assert json.loads((run / "manifest.json").read_text())["model_weights"] == {
        "timm:resnet18[weights=random]": "random weights"}
    assert (run / "summary.md").read_text().startswith("> timm:resnet18[weights=random]: random weights")


def test_the_report_puts_it_first_and_every_verdict_says_unverified(random_run):
    run, _ = random_run
    _, md_path = build_report(run, examples=False)
    md = md_path.read_text()
    blocks = [b for b in md.split("\n\n") if b.strip()]
    assert blocks[0].startswith("# Robustness report")
    assert blocks[1].startswith("> " + UNVERIFIED)  # right under the title, above all else
    assert "random weights" in blocks[2] and "| model | timm:resnet18[weights=random] (random weights) |" in md
    head = "## Which defenses help"
    verdicts = md[md.index(head):md.index("\n## ", md.index(head))]
    lines = [line for line in verdicts.splitlines() if line.startswith("jpeg: ")]
    assert lines == [f"jpeg: {UNVERIFIED}."] * 2  # one per threat model
    worst = md[md.index("| defense | threat model | ε | worst-case top-1"):].split("\n\n")[0]
    assert worst.count(UNVERIFIED) == 2  # none and jpeg under bpda: the baseline too


def test_random_weights_are_the_same_network_in_every_process():
    torch.manual_seed(1)
    a = load_model("torchvision:resnet18", weights="random").module.state_dict()
    torch.manual_seed(2)
    b = load_model("torchvision:resnet18[weights=random]").module.state_dict()  # as --model and explain write it
    assert all(torch.equal(a[k], b[k]) for k in a)
    after = torch.rand(1)
    torch.manual_seed(2)
    assert torch.equal(after, torch.rand(1))  # the caller's RNG is left as it was


def _one_cell(tmp_path, model: str, name: str):
    spec = SweepSpec(models=[model], attacks=["fgsm"], defenses=[], threat_models=["oblivious"], n=4, batch_size=4)
    sweep(spec, out=tmp_path, run=name, checks="model_sanity")
    return sanity(tmp_path / name).iloc[0]


def test_the_embedded_model_passes(tmp_path):
    row = _one_cell(tmp_path, "efficientnet_lite0", "embedded")
    assert row.status == "pass" and "clean top-1 0.75 on 4 images" in row.reason  # 3 of the first 4


class NormalisesAgain(nn.Module):
    """The embedded network behind its own (0.5, 0.5) normalisation, as a plugin that normalises itself."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network((x - 0.5) / 0.5)


@pytest.fixture
def normalised_twice():
    """A plugin model that normalises inside and also declares ImageNet's normalisation, which hbbench
    applies first: the network sees its inputs normalised twice."""
    with registering_as("test_model_sanity"):
        @MODELS.register("normalised_twice", "the embedded network, normalised twice")
        def factory() -> LoadedModel:
            network = load_model("efficientnet_lite0").module
            return LoadedModel("normalised_twice", NormalisesAgain(network).eval(), IMAGENET_MEAN, IMAGENET_STD, 1000)
    yield "normalised_twice"
    unregister_source("test_model_sanity")


def test_a_model_normalised_twice_still_classifies_and_passes(tmp_path, normalised_twice):
    """Measured: normalised twice, the embedded network gets 0.45 of the 20 embedded images (0.80
    normalised once), 2 of the first 4: degraded, not at chance. model_sanity is for a model that
    does not classify at all, so it passes here, with the lower top-1 in its numbers."""
    row = _one_cell(tmp_path, normalised_twice, "twice")
    assert row.status == "pass" and "clean top-1 0.50 on 4 images" in row.reason
