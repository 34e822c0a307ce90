import ast
from pathlib import Path

import pytest
import torch

import slotlab
from slotlab.data import Batches, data_root, dataset_info, load_split, make_splits, random_crop_flip
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


def test_missing_dataset_names_the_files_and_both_fixes(tmp_path) -> None:
    with pytest.raises(SlotlabError) as info:
        load_split("mnist", train=True, root=tmp_path, download=False)
    assert str(info.value) == (
        f"MNIST not found under {tmp_path}: missing in MNIST/raw/: train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; download it with "
        f"`python -m slotlab data prepare {tmp_path}` (online), or set SLOTLAB_DATA to a folder that holds "
        "these files"
    )


def _mnist_root_with_truncated_test_images(tmp_path: Path) -> Path:
    """tmp/MNIST/raw: links to the real files, and a 4 kB truncated copy of t10k-images-idx3-ubyte."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    real = data_root() / "MNIST" / "raw"
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).symlink_to(real / name)
    with open(real / "t10k-images-idx3-ubyte", "rb") as f:
        (raw / "t10k-images-idx3-ubyte").write_bytes(f.read(4096))
    return raw


@requires_mnist
@pytest.mark.parametrize(
    "download", [False, True]
)  # True: torchvision sees the files exist, downloads nothing
def test_a_truncated_file_is_named_as_damaged_not_missing(tmp_path: Path, download: bool) -> None:
    raw = _mnist_root_with_truncated_test_images(tmp_path)
    with pytest.raises(SlotlabError) as info:
        load_split("mnist", train=False, root=tmp_path, download=download)
    assert str(info.value) == (
        f"MNIST file {raw / 't10k-images-idx3-ubyte'} (4096 bytes, expected 7840016; expected MD5 "
        "2646ac647ad5339dbf082846283269ea) is damaged: delete it and run "
        f"`python -m slotlab data prepare {tmp_path}` (online) to download it again"
    )


@requires_mnist
def test_a_load_failure_with_intact_files_keeps_its_cause(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    raw = _mnist_root_with_truncated_test_images(tmp_path)
    (raw / "t10k-images-idx3-ubyte").unlink()
    (raw / "t10k-images-idx3-ubyte").symlink_to(data_root() / "MNIST" / "raw" / "t10k-images-idx3-ubyte")

    def broken(root, train, download):
        raise OSError("disk on fire\nsecond line")

    monkeypatch.setattr(torchvision.datasets, "MNIST", broken)
    with pytest.raises(SlotlabError) as info:
        load_split("mnist", train=False, root=tmp_path, download=False)
    assert str(info.value) == (
        f"cannot load MNIST from {tmp_path} (OSError: disk on fire second line); its files look intact: run "
        f"`python -m slotlab data check {tmp_path}` to see them"
    )


def test_data_modules_import_each_other_in_one_direction_at_module_level() -> None:
    """data imports imagenet and dataset_files at the top; they import neither data nor each other."""
    imports: dict[str, set[str]] = {}
    for name in ("data", "imagenet", "dataset_files"):
        tree = ast.parse((Path(slotlab.__file__).parent / f"{name}.py").read_text())
        top: set[str] = set()
        inner: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "slotlab":
                found = {f"slotlab.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("slotlab."):
                found = {node.module}
            elif isinstance(node, ast.Import):
                found = {alias.name for alias in node.names if alias.name.startswith("slotlab")}
            else:
                continue
            (top if node in tree.body else inner).update(found)
        assert not inner, f"slotlab/{name}.py imports slotlab modules inside functions: {sorted(inner)}"
        imports[name] = top
    assert {"slotlab.imagenet", "slotlab.dataset_files"} <= imports["data"]
    assert not imports["imagenet"] & {"slotlab.data", "slotlab.dataset_files"}
    assert not imports["dataset_files"] & {"slotlab.data", "slotlab.imagenet"}


@requires_mnist
def test_real_mnist_shapes_and_default_split() -> None:
    splits = make_splits("mnist")
    assert splits.train.images.shape == (50_000, 1, 28, 28) and splits.train.images.dtype == torch.uint8
    assert len(splits.val) == 10_000 and len(splits.test) == 10_000
    assert torch.bincount(splits.test.labels).tolist()[:3] == [980, 1135, 1032]


def test_normalize_false_feeds_pixels_in_unit_range_as_to_tensor_does() -> None:
    info = dataset_info("synthetic")
    split = load_split("synthetic", train=False)
    images, _ = next(Batches(split, info, 64, normalize=False).epoch())
    # torchvision's ToTensor(): uint8 / 255, nothing subtracted
    assert torch.allclose(images, split.images[:64].float() / 255, atol=1e-6)
    assert images.min() >= 0 and images.max() <= 1


def test_crop_false_only_flips_each_image_or_leaves_it() -> None:
    info = dataset_info("synthetic-cifar")
    split = load_split("synthetic-cifar", train=False)
    batches = Batches(split, info, 500, augment=True, crop=False, normalize=False)
    images, labels = next(batches.epoch(torch.Generator().manual_seed(5)))
    raw = split.images.float() / 255
    flipped = 0
    for image in images:
        same = (raw == image).flatten(1).all(1).any()
        mirrored = (raw.flip(-1) == image).flatten(1).all(1).any()
        assert same or mirrored  # never shifted
        flipped += int(mirrored and not same)
    assert 0.4 < flipped / len(images) < 0.6  # a flip with p = 1/2


def _write_indices(path: Path, indices: list[int]) -> Path:
    if path.suffix == ".pt":
        torch.save(torch.tensor(indices), path)
    else:
        path.write_text(" ".join(map(str, indices)))
    return path


@pytest.mark.parametrize("suffix", [".pt", ".txt"])
def test_val_indices_hold_out_exactly_the_listed_examples(tmp_path: Path, suffix: str) -> None:
    full = load_split("synthetic", train=True)
    chosen = torch.randperm(len(full), generator=torch.Generator().manual_seed(1))[:123].tolist()
    splits = make_splits("synthetic", val_indices=_write_indices(tmp_path / f"val{suffix}", chosen))
    assert torch.equal(splits.val.images, full.images[chosen])
    rest = [i for i in range(len(full)) if i not in set(chosen)]  # the others, in index order
    assert torch.equal(splits.train.images, full.images[rest]) and torch.equal(
        splits.train.labels, full.labels[rest]
    )


@pytest.mark.parametrize(
    "indices, message",
    [([0, 0, 1], "repeats indices"), ([-1, 2], "must lie in"), ([10**6], "must lie in"), ([], "must lie in")],
)
def test_bad_val_indices_are_one_line_errors(tmp_path: Path, indices: list[int], message: str) -> None:
    path = _write_indices(tmp_path / "val.txt", indices)
    with pytest.raises(SlotlabError, match=message):
        make_splits("synthetic", val_indices=path)
    with pytest.raises(SlotlabError, match="not found"):
        make_splits("synthetic", val_indices=tmp_path / "missing.pt")
    (tmp_path / "float.pt").write_bytes(b"")
    torch.save(torch.rand(3), tmp_path / "float.pt")
    with pytest.raises(SlotlabError, match="must be integers"):
        make_splits("synthetic", val_indices=tmp_path / "float.pt")
