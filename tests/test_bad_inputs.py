"""Bad CLI input: every case exits 2 with ONE readable line on stderr that names the problem, no
traceback, and no half-written results (no cell file anywhere under the output directory).

In-process through click's CliRunner. Most cases fail while the grid is checked, before any model
or image is loaded; the few that need the model (shape and class-count mismatches) load the small
embedded one once each."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hbbench.cli import main
from tests.conftest import TINY_PLUGIN, cli_runner


# A tiny grid: one cheap attack, one defense, one threat model, one sample.
TINY = ["--attacks", "fgsm", "--defense", "jpeg", "--threat", "oblivious", "--n", "1", "--batch-size", "1",
        "--device", "cpu"]


def _imagefolder(tmp, content: bytes | None) -> str:
    """An ImageNet-layout folder with one file of ``content`` (None: the synset folder stays empty)."""
    root = tmp / "images"
    (root / "n01440764").mkdir(parents=True)
    if content is not None:
        (root / "n01440764" / "a.JPEG").write_bytes(content)
    return f"imagefolder:{root}"


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    return buf.getvalue()


def _imagenet_without_devkit(tmp) -> str:
    (tmp / "imagenet" / "val").mkdir(parents=True)
    return f"imagenet:{tmp / 'imagenet'}"


def _not_synsets(tmp) -> str:
    (tmp / "pets" / "cats").mkdir(parents=True)
    return f"imagefolder:{tmp / 'pets'}"


def _npz(tmp, x, y) -> str:
    path = tmp / "data.npz"
    np.savez(path, x=x, y=y)
    return f"npz:{path}"


def _npz_args(x, y):
    return lambda t: ["--data", _npz(t, x, y), "--n", str(len(x))]


def _yaml(tmp, text: str) -> str:
    path = tmp / "spec.yaml"
    path.write_text(text)
    return str(path)


def _nan_images():
    x = np.full((2, 3, 224, 224), 0.5, np.float32)
    x[1, 0, 5, 5] = np.nan
    return x


def _file(tmp) -> str:
    (tmp / "plainfile").write_text("I am a file, not a directory\n")
    return str(tmp / "plainfile" / "sub")


def _evil_weights(tmp) -> str:
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp / "pwned"), "w"))

    torch.save({"state_dict": Evil()}, tmp / "evil.pt")
    return str(tmp / "evil.pt")


def _plugin(tmp, text: str) -> str:
    path = tmp / "my_plugin.py"
    path.write_text(text)
    return str(path)


RAISES = "raise RuntimeError('no GPU here')\n"
TAKES_JPEG = ("from hbbench.defenses import DEFENSES\n"
              "@DEFENSES.register('jpeg', 'my jpeg')\n"
              "def jpeg(classifier):\n    return None\n")


# (id, build(tmp) -> extra args, keyword the error line must contain). Extra args come after TINY,
# so they override it (click keeps the last value of a repeated option).
CASES = [
    ("unknown-attack", lambda t: ["--attacks", "fgsmm"], "unknown attack 'fgsmm'"),
    ("unknown-attack-param", lambda t: ["--attacks", "pgd[maxiter=3]"], "maxiter"),
    ("bad-attack-param-type", lambda t: ["--attacks", "pgd[max_iter=many]"], "max_iter"),
    ("attack-param-value-refused-by-art", lambda t: ["--attacks", "pgd[max_iter=2],pgd[max_iter=-1]"],
     "attack 'pgd[max_iter=-1]'"),
    ("attack-norm-unknown", lambda t: ["--attacks", "fgsm[norm=3]"], "norm must be inf or 2"),
    ("unknown-defense", lambda t: ["--defense", "jpg"], "unknown defense 'jpg'"),
    ("unknown-defense-param", lambda t: ["--defense", "jpeg[qualty=3]"], "qualty"),
    ("bad-defense-param-type", lambda t: ["--defense", "jpeg[quality=high]"], "quality"),
    ("defense-param-out-of-range", lambda t: ["--defense", "jpeg[quality=200]"], "quality must be in 1..95"),
    ("tvm-prob-out-of-range", lambda t: ["--defense", "tvm[prob=0]"], "tvm prob must be in (0, 1]"),
    ("unknown-model", lambda t: ["--model", "resnet9000"], "unknown model 'resnet9000'"),
    ("unknown-model-among-valid", lambda t: ["--model", "efficientnet_lite0,resnet9000"],
     "unknown model 'resnet9000'"),
    ("model-twice", lambda t: ["--model", "efficientnet_lite0,efficientnet_lite0"], "given twice"),
    ("weights-for-several-models", lambda t: ["--model", "efficientnet_lite0,torchvision:resnet18", "--weights",
                                              "w.pt"], "give each its own"),
    ("unknown-torchvision-arch", lambda t: ["--model", "torchvision:resnet9000"], "resnet9000"),
    ("torchvision-without-weights", lambda t: ["--model", "torchvision:resnet18"],
     "has no weights: give weights=PATH (a local state dict), weights=DEFAULT or --download (torchvision's ImageNet "
     "weights), or weights=random to benchmark an untrained network on purpose"),
    ("timm-without-weights", lambda t: ["--model", "timm:resnet18"],
     "has no weights: give weights=PATH (a local state dict), or --download (timm's pretrained weights), or "
     "weights=random to benchmark an untrained network on purpose"),
    ("classes-of-model-vs-dataset", lambda t: ["--model", "timm:vit_tiny_patch16_224.augreg_in21k[weights=random]"],
     "labelled with the imagenet-1k classes but model timm:vit_tiny_patch16_224.augreg_in21k[weights=random] "
     "outputs the imagenet-21k-goog classes"),
    ("unknown-dataset", lambda t: ["--data", "mnist"], "unknown dataset 'mnist'"),
    ("unknown-threat", lambda t: ["--threat", "oblivious,whitebox"], "unknown threat model 'whitebox'"),
    ("budget-division-by-zero", lambda t: ["--eps", "4/0"], "bad budget '4/0'"),
    ("budget-negative", lambda t: ["--eps", "-1"], "bad budget '-1'"),
    ("budget-zero", lambda t: ["--eps", "0"], "bad budget '0'"),
    ("budget-not-a-number", lambda t: ["--eps", "abc"], "bad budget 'abc'"),
    ("budget-empty", lambda t: ["--eps", ","], "no budget"),
    ("budget-overflow", lambda t: ["--eps", "9" * 400 + "/1"], "bad budget"),
    ("budget-linf-in-255-units", lambda t: ["--eps", "8"], "did you mean 8/255?"),
    ("budget-linf-in-attack-params", lambda t: ["--attacks", "pgd[eps=16]"], "did you mean 16/255?"),
    ("eot-zero", lambda t: ["--threat", "bpda[eot=0]"], "eot must be an integer >= 1"),
    ("eot-not-an-integer", lambda t: ["--threat", "bpda[eot=2.5]"], "eot must be an integer >= 1"),
    ("eot-oblivious", lambda t: ["--threat", "oblivious[eot=4]"], "eot applies to bpda and adaptive"),
    ("check-unknown", lambda t: ["--checks", "gradient_masking"], "unknown check 'gradient_masking'"),
    ("check-samples-zero", lambda t: ["--check-samples", "0"], "check samples must be a positive integer"),
    ("attack-eps-negative", lambda t: ["--attacks", "pgd[eps=-4/255]"], "bad budget"),
    ("n-zero", lambda t: ["--n", "0"], "n must be >= 1"),
    ("n-not-an-integer", lambda t: ["--n", "two"], "--n"),
    ("batch-size-negative", lambda t: ["--batch-size", "-4"], "batch_size must be >= 1"),
    ("shard-size-zero", lambda t: ["--shard-size", "0"], "shard_size"),
    ("workers-zero", lambda t: ["--workers", "0"], "--workers"),
    ("threads-zero", lambda t: ["--threads", "0"], "--threads"),
    ("loader-workers-negative", lambda t: ["--loader-workers", "-1"], "--loader-workers"),
    ("executor-unknown", lambda t: ["--executor", "spark"], "unknown executor 'spark'; valid choices: local, ray"),
    ("surrogate-unknown", lambda t: ["--surrogate", "nosuchnet"], "unknown model 'nosuchnet'"),
    ("save-examples-negative", lambda t: ["--save-examples", "-1"], "--save-examples takes a count >= 0 or 'all'"),
    ("address-without-ray", lambda t: ["--address", "auto"], "--address is for --executor ray"),
    ("seed-not-an-integer", lambda t: ["--seed", "abc"], "--seed"),
    ("device-unknown", lambda t: ["--device", "tpu"], "--device"),
    ("weights-for-embedded-model", lambda t: ["--weights", "w.pt"], "takes no --weights"),
    ("imagefolder-missing", lambda t: ["--data", f"imagefolder:{t / 'nowhere'}"], "not found"),
    ("imagefolder-corrupt-image", lambda t: ["--data", _imagefolder(t, b"\x89PNG\r\n garbage")],
     "cannot read image"),
    ("imagefolder-empty-image", lambda t: ["--data", _imagefolder(t, b"")], "cannot read image"),
    ("imagefolder-no-images", lambda t: ["--data", _imagefolder(t, None)], "no images found"),
    ("imagefolder-not-a-synset", lambda t: ["--data", _not_synsets(t)], "not an ImageNet synset"),
    ("dataset-unknown-param", lambda t: ["--data", _imagefolder(t, _png()) + "[bogus=1]"], "no parameter bogus"),
    ("dataset-sample-unknown", lambda t: ["--data", _imagefolder(t, _png()) + "[sample=random]"],
     "sample must be stratified or first"),
    ("imagenet-no-devkit", lambda t: ["--data", _imagenet_without_devkit(t)], "has no devkit"),
    ("npz-missing", lambda t: ["--data", f"npz:{t / 'none.npz'}"], "npz file not found"),
    ("npz-not-an-npz", lambda t: ["--data", "npz:" + _yaml(t, "not a zip")], "cannot read npz"),
    ("npz-3d-images", _npz_args(np.zeros((2, 224, 224), np.float32), np.array([0, 1])), "4 dimensions"),
    ("npz-label-count", _npz_args(np.zeros((2, 3, 224, 224), np.float32), np.array([0])), "integer labels"),
    ("npz-float-labels", _npz_args(np.zeros((2, 3, 224, 224), np.float32), np.array([0.0, 1.0])),
     "integer labels"),
    ("npz-nan-images", _npz_args(_nan_images(), np.array([0, 1])), "NaN"),
    ("npz-out-of-range", _npz_args(np.full((2, 3, 224, 224), -3, np.float32), np.array([0, 1])), "[0, 1]"),
    ("npz-shape-vs-model", _npz_args(np.zeros((2, 3, 32, 32), np.float32), np.array([0, 1])),
     "expects (3, 224, 224)"),
    ("npz-classes-vs-model", _npz_args(np.zeros((2, 3, 224, 224), np.float32), np.array([0, 1500])),
     "1501 classes"),
    ("yaml-unknown-key", lambda t: ["--config", _yaml(t, "attacks: [fgsm]\nepsilon: 4/255\n")], "epsilon"),
    ("yaml-wrong-type", lambda t: ["--config", _yaml(t, "seed: lots\n")], "seed must be an integer"),
    ("yaml-unknown-model-in-list", lambda t: ["--config", _yaml(t, "models: [efficientnet_lite0, bogus]\n")],
     "unknown model 'bogus'"),
    ("yaml-not-a-mapping", lambda t: ["--config", _yaml(t, "- fgsm\n- pgd\n")], "must be a mapping"),
    ("yaml-invalid", lambda t: ["--config", _yaml(t, "attacks: [fgsm\n")], "not valid YAML"),
    ("yaml-missing", lambda t: ["--config", str(t / "nope.yaml")], "nope.yaml"),
    ("output-under-a-file", lambda t: ["--out", _file(t)], "cannot write to output directory"),
    ("weights-missing", lambda t: ["--model", "torchvision:resnet18", "--weights", str(t / "no.pt")],
     "weights file not found"),
    ("weights-unsafe-pickle", lambda t: ["--model", "torchvision:resnet18", "--weights", _evil_weights(t)],
     "--trust-checkpoint"),
    ("checkpoint-needs-trust", lambda t: ["--model", f"checkpoint:{_evil_weights(t)}"], "--trust-checkpoint"),
    ("plugin-file-missing", lambda t: ["--plugin", str(t / "nowhere.py")], "plugin file not found"),
    ("plugin-module-missing", lambda t: ["--plugin", "no_such_plugin_module"], "cannot be found"),
    ("plugin-raises-on-import", lambda t: ["--plugin", _plugin(t, RAISES)], "raised RuntimeError on import: no GPU"),
    ("plugin-registers-existing-name", lambda t: ["--plugin", _plugin(t, TAKES_JPEG)],
     "defense 'jpeg' is already registered by hbbench"),
    ("plugin-model-refuses-its-parameter", lambda t: ["--plugin", TINY_PLUGIN, "--model", "tiny_cnn[weights=random,size=8]"],
     "tiny_cnn: size must be at least 16 px"),
    ("image-size-vs-model", lambda t: ["--plugin", TINY_PLUGIN, "--model", "tiny_cnn[weights=random,size=32]"],
     "has images of shape (3, 224, 224) but model tiny_cnn expects (3, 32, 32)"),
]


@pytest.fixture(scope="module")
def runner():
    return cli_runner()


@pytest.mark.parametrize("build,keyword", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(runner, tmp_path, monkeypatch, build, keyword):
    monkeypatch.chdir(tmp_path)  # a relative default (results/) lands in tmp_path too
    out = tmp_path / "results"
    extra = build(tmp_path)
    args = ["sweep", *TINY, "--out", str(out), *extra]
    result = runner.invoke(main, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stdout + result.stderr, result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and keyword in lines[0], lines[0]
    assert not result.stdout.strip()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "cells" in p.parts]
    assert written == []  # no cell or shard file, complete or partial
    assert not out.exists() or not any(out.iterdir())  # not even an empty run directory
    assert not (tmp_path / "pwned").exists()  # an unsafe pickle never ran


# Options whose every value is meaningful, or that only name a place to write to.
NO_BAD_VALUE = {"run_name", "download", "trust_checkpoint", "help"}


def test_every_sweep_option_that_takes_a_value_has_a_bad_input_case(tmp_path):
    """A new `sweep` option must come with a case here: the matrix covers the CLI as it is."""
    from hbbench.cli import sweep

    used = set(TINY)
    for name, build, _ in CASES:
        (tmp_path / name).mkdir()
        used |= {arg for arg in build(tmp_path / name) if str(arg).startswith("--")}
    missing = [p.opts[0] for p in sweep.params
               if p.name not in NO_BAD_VALUE and not (set(p.opts) & used)]
    assert not missing, f"sweep options with no bad-input case: {missing}"


# Commands that read a run directory, on one whose manifest is truncated or missing: (argv, the exit
# code their --help documents: verify 1 for "something is not ok", the others 2 for a user error).
RUN_DIR_COMMANDS = {"check": (["check", "--checks", "default"], 2), "report": (["report", "--no-examples"], 2),
                    "verify": (["verify"], 1)}


@pytest.mark.parametrize("manifest", ["truncated", "missing"])
@pytest.mark.parametrize("command", list(RUN_DIR_COMMANDS))
def test_a_damaged_manifest_is_one_line_with_the_documented_exit_code(runner, tmp_path, command, manifest):
    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    if manifest == "truncated":
        (run / "manifest.json").write_text('{"spec": {"attacks": ["fgsm"], "defenses": ')
    argv, code = RUN_DIR_COMMANDS[command]
    result = runner.invoke(main, [argv[0], str(run), *argv[1:]])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, (result.exit_code, result.stdout + result.stderr, result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    assert len(lines) == 1, lines
    if code == 2:
        assert lines[0].startswith(f"error: {run / 'manifest.json'} is damaged") and "--run run" in lines[0], lines
    else:  # verify: its table names the manifest, the one stderr line says what to do
        assert any(row.split()[:2] == (["damaged", "manifest.json"] if manifest == "truncated" else
                                       ["missing", "manifest.json"]) for row in result.stdout.splitlines()), \
            result.stdout
    assert sorted(p.name for p in run.iterdir()) == ["cells"] + (["manifest.json"] if manifest == "truncated" else [])
