import numpy as np
import pytest
import torch

from hbbench.datasets import load_dataset
from hbbench.errors import HBBenchError, UnknownName
from hbbench.models import load_model
from tests.conftest import top1


def test_embedded_model_clean_accuracy(classifier):
    ds = load_dataset("imagenet-samples")
    assert ds.x.shape == (20, 3, 224, 224) and ds.x.dtype == np.float32
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    assert top1(classifier, ds.x, ds.y) >= 0.8


def test_classifier_is_frozen_eval_with_normalisation(classifier):
    assert not classifier.model.training
    assert all(not p.requires_grad for p in classifier.model.parameters())
    assert np.allclose(classifier.preprocessing.mean.ravel(), 0.5)
    assert tuple(classifier.clip_values) == (0.0, 1.0)


def test_n_takes_first_samples_in_fixed_order():
    a, b = load_dataset("imagenet-samples", n=3), load_dataset("imagenet-samples", n=5)
    assert np.array_equal(a.x, b.x[:3]) and list(a.y) == list(b.y[:3])
    assert a.ids[0].startswith("imagenet_00_")


def test_imagefolder_keeps_true_imagenet_indices(tmp_path):
    from PIL import Image

    for synset in ("n01440764", "n01443537"):  # ImageNet classes 0 and 1
        (tmp_path / synset).mkdir()
        Image.fromarray(np.full((300, 260, 3), 128, np.uint8)).save(tmp_path / synset / "a.JPEG")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert list(ds.y) == [0, 1] and ds.x.shape == (2, 3, 224, 224)


def test_imagefolder_names_unreadable_file(tmp_path):
    (tmp_path / "n01440764").mkdir()
    (tmp_path / "n01440764" / "broken.JPEG").write_bytes(b"not an image")
    with pytest.raises(HBBenchError, match="broken.JPEG"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_npz_rejects_nan_and_bad_shapes(tmp_path):
    p = tmp_path / "d.npz"
    x = np.zeros((2, 3, 8, 8), np.float32)
    x[0, 0, 0, 0] = np.nan
    np.savez(p, x=x, y=np.array([0, 1]))
    with pytest.raises(HBBenchError, match="NaN"):
        load_dataset(f"npz:{p}")
    np.savez(p, x=np.zeros((2, 8, 8), np.float32), y=np.array([0, 1]))
    with pytest.raises(HBBenchError, match="4 dimensions"):
        load_dataset(f"npz:{p}")


def test_unknown_names_list_valid_choices():
    with pytest.raises(UnknownName, match="efficientnet_lite0"):
        load_model("resnet9000")
    with pytest.raises(UnknownName, match="imagenet-samples"):
        load_dataset("mnist")


def test_state_dict_loading_is_safe_by_default(tmp_path):
    """A pickle that would run code is refused without --trust-checkpoint."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(HBBenchError, match="--trust-checkpoint"):
        load_model("torchvision:resnet18", weights=str(path))
    assert not marker.exists()
    with pytest.raises(HBBenchError, match="--trust-checkpoint"):
        load_model(f"checkpoint:{path}")
    assert not marker.exists()


def test_torchvision_weights_from_local_state_dict(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    loaded = load_model("torchvision:resnet18", weights=str(tmp_path / "r18.pt"))
    assert loaded.num_classes == 1000
    assert torch.equal(loaded.module.fc.weight, ref.fc.weight)


def test_torchvision_default_weights_never_download_silently(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(HBBenchError, match="--download"):
        load_model("torchvision:vgg19", weights="DEFAULT")
