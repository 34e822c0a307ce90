import pytest
import torch

from slotlab.data import Batches, dataset_info, load_split, make_splits, random_crop_flip
from slotlab.errors import SlotlabError
from tests.conftest import requires_mnist


def test_split_is_seeded_disjoint_and_complete() -> None:
    a = make_splits("synthetic", val_size=300, split_seed=1)
    b = make_splits("synthetic", val_size=300, split_seed=1)
    c = make_splits("synthetic", val_size=300, split_seed=2)
    assert torch.equal(a.val.images, b.val.images) and not torch.equal(a.val.images, c.val.images)
    full = load_split("synthetic", train=True)
    assert len(a.train) + len(a.val) == len(full)
    rows = {tuple(x.flatten().tolist()) for x in a.train.images}
    assert not any(tuple(x.flatten().tolist()) in rows for x in a.val.images)


def test_batches_normalise_with_the_dataset_statistics() -> None:
    info = dataset_info("synthetic-cifar")
    split = load_split("synthetic-cifar", train=False)
    images, labels = next(Batches(split, info, 64).epoch())
    raw = split.images[:64].float() / 255
    mean, std = torch.tensor(info.mean).view(1, 3, 1, 1), torch.tensor(info.std).view(1, 3, 1, 1)
    assert torch.allclose(images, (raw - mean) / std, atol=1e-5)
    assert torch.equal(labels, split.labels[:64])


def test_epoch_order_depends_on_the_generator_only() -> None:
    info, split = dataset_info("synthetic"), load_split("synthetic", train=False)
    batches = Batches(split, info, 100)
    first = [y for _, y in batches.epoch(torch.Generator().manual_seed(3))]
    again = [y for _, y in batches.epoch(torch.Generator().manual_seed(3))]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=False))
    assert sorted(torch.cat(first).tolist()) == sorted(split.labels.tolist())  # each example once


def test_random_crop_flip_matches_a_per_image_reference() -> None:
    images = torch.rand(6, 3, 8, 8)
    out = random_crop_flip(images, torch.Generator().manual_seed(0), padding=2)
    gen = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 5, (6,), generator=gen)
    dx = torch.randint(0, 5, (6,), generator=gen)
    flip = torch.rand(6, generator=gen) < 0.5
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(6):
        crop = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)


def test_missing_dataset_names_the_folder_and_the_fix(tmp_path) -> None:
    with pytest.raises(SlotlabError, match=f"MNIST not found under {tmp_path}.*SLOTLAB_DATA.*online") as info:
        load_split("mnist", train=True, root=tmp_path, download=False)
    assert "\n" not in str(info.value)


@requires_mnist
def test_real_mnist_shapes_and_default_split() -> None:
    splits = make_splits("mnist")
    assert splits.train.images.shape == (50_000, 1, 28, 28) and splits.train.images.dtype == torch.uint8
    assert len(splits.val) == 10_000 and len(splits.test) == 10_000
    assert torch.bincount(splits.test.labels).tolist()[:3] == [980, 1135, 1032]
