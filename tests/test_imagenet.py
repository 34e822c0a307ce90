"""ImageNet: the image-folder loader on a tiny synthetic folder made here, and the ResNet-50 family."""

from pathlib import Path

import pytest
import torch
from torch import nn

from slotlab.config import RunConfig
from slotlab.data import dataset_info, epoch_generator, make_batches, make_splits
from slotlab.errors import SlotlabError
from slotlab.imagenet import FolderBatches, check_images
from slotlab.layers import DenseFactory, SlotFactory
from slotlab.models import build_model
from slotlab.runs import load_or_run

CLASSES = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """tmp/imagenet/{train,val}/<wnid>/: 6 + 2 images per class, of varied sizes, PNG and JPEG, one grayscale."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for part, count in (("train", 6), ("val", 2)):
        for label, wnid in enumerate(CLASSES):
            (tmp_path / "imagenet" / part / wnid).mkdir(parents=True)
            for i in range(count):
                h, w = 40 + 8 * i, 64 - 4 * i
                pixels = (torch.rand(h, w, 3, generator=gen) * 128 + 60 * label).to(torch.uint8).numpy()
                image = Image.fromarray(pixels)
                if i == 1:
                    image = image.convert("L")
                image.save(tmp_path / "imagenet" / part / wnid / f"{wnid}_{i}.{'JPEG' if i % 2 else 'png'}")
    return tmp_path


def test_folder_splits_hold_out_validation_and_use_val_as_test(folder: Path) -> None:
    splits = make_splits("imagenet", val_size=3, split_seed=1, root=folder)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 3, 6)
    assert splits.train.classes == CLASSES  # sorted folder names, numbered as ImageFolder does
    train_paths = {p for p, _ in splits.train.samples}
    val_paths = {p for p, _ in splits.val.samples}
    assert not train_paths & val_paths and len(train_paths | val_paths) == 18
    assert all(Path(p).parent.name == CLASSES[label] for p, label in splits.test.samples)
    assert all("/val/" in p for p, _ in splits.test.samples)
    other = make_splits("imagenet", val_size=3, split_seed=2, root=folder)
    assert {p for p, _ in other.val.samples} != val_paths  # the hold-out follows split_seed


def test_evaluation_batches_are_resize_256_center_crop_224_normalised(folder: Path) -> None:
    from PIL import Image
    from torchvision import transforms

    splits = make_splits("imagenet", val_size=3, root=folder)
    info = dataset_info("imagenet")
    batches = make_batches(splits.test, info, 4)
    assert isinstance(batches, FolderBatches)
    images, labels = torch.cat([x for x, _ in batches.epoch()]), torch.cat([y for _, y in batches.epoch()])
    assert images.shape == (6, 3, 224, 224) and labels.tolist() == splits.test.labels.tolist()
    reference = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(info.mean, info.std),
        ]
    )
    for image, (path, _) in zip(images, splits.test.samples, strict=True):
        expected = reference(Image.open(path).convert("RGB"))
        assert torch.allclose(image, expected, atol=1e-4)
    shards = [FolderBatches(splits.test, info, 4, rank=r, world_size=2) for r in (0, 1)]
    seen = sorted(y for s in shards for _, labels in s.epoch() for y in labels.tolist())
    assert seen == sorted(splits.test.labels.tolist())  # two ranks evaluate every image exactly once


def test_training_crops_follow_the_epoch_seed_not_the_worker_count(folder: Path) -> None:
    splits = make_splits("imagenet", val_size=3, root=folder)
    info = dataset_info("imagenet")

    def epoch(seed: int, workers: int, size: int = 32) -> torch.Tensor:
        batches = FolderBatches(splits.train, info, 5, image_size=size, workers=workers)
        return torch.cat([x for x, _ in batches.epoch(epoch_generator(seed, 0))])

    first = epoch(0, workers=0)
    assert first.shape == (15, 3, 32, 32)
    assert torch.equal(first, epoch(0, workers=2))
    assert not torch.equal(first, epoch(1, workers=0))
    # each rank's images are those of the single-process order at its positions, with the same crops
    parts = [
        FolderBatches(splits.train, info, 4, rank=r, world_size=2, image_size=32, workers=0) for r in (0, 1)
    ]
    rank0 = torch.cat([x for x, _ in parts[0].epoch(epoch_generator(0, 0))])
    assert torch.equal(rank0, first[0::2])


def test_a_run_trains_and_evaluates_every_test_image(folder: Path, tmp_path: Path) -> None:
    config = RunConfig(
        method="dense", model="lenet300", dataset="imagenet", epochs=1, batch_size=5, val_size=3, momentum=0.0
    )
    result = load_or_run(config, root=tmp_path / "runs", data_root=folder)
    history = result.history
    assert history["split"].tolist() == ["train", "val", "test"]
    assert history["loss"].notna().all() and history["loss"].iloc[0] > 0
    assert float(result.metrics["test_accuracy"] * 6).is_integer()  # a count over the 6 test images
    assert float(result.metrics["val_accuracy"] * 3).is_integer()


def test_missing_folder_says_which_layout_is_expected(tmp_path: Path) -> None:
    with pytest.raises(SlotlabError, match=r"imagenet/train/<class>/<image>"):
        make_splits("imagenet", root=tmp_path)


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, Path]:
    """tmp/imagenet/{train,val}/<wnid>/ of two classes of 8x8 PNGs, and train/ holding one garbage .JPEG."""
    from PIL import Image

    for part, count in (("train", 3), ("val", 1)):
        for label, wnid in enumerate(CLASSES[:2]):
            (tmp_path / "imagenet" / part / wnid).mkdir(parents=True)
            for i in range(count):
                image = Image.new("RGB", (8, 8), (100 * label, 40 * i, 7))
                image.save(tmp_path / "imagenet" / part / wnid / f"{wnid}_{i}.png")
    bad = tmp_path / "imagenet" / "train" / CLASSES[1] / f"{CLASSES[1]}_9.JPEG"
    bad.write_bytes(b"\x00\x13 these bytes are no image " * 8)
    return tmp_path, bad


@pytest.mark.parametrize("workers", [0, 2])
def test_an_image_that_does_not_decode_stops_the_run_with_its_name(damaged, workers: int) -> None:
    root, bad = damaged
    splits = make_splits("imagenet", val_size=0, root=root)
    assert str(bad) in {p for p, _ in splits.train.samples}
    batches = FolderBatches(splits.train, dataset_info("imagenet"), 2, image_size=8, workers=workers)
    for epoch in (lambda: batches.epoch(epoch_generator(0, 0)), batches.epoch):  # training and evaluation
        with pytest.raises(SlotlabError, match=r"cannot be decoded") as caught:
            list(epoch())
        message = str(caught.value)
        # one line that names the file, also when torch re-raised it from a loader worker process
        assert message.startswith(f"image {bad} cannot be decoded (") and "delete or replace it" in message
        assert "\n" not in message and "Traceback" not in message and "worker" not in message
    assert len(list(FolderBatches(splits.test, dataset_info("imagenet"), 2, image_size=8).epoch())) == 1


def test_check_images_finds_the_files_that_do_not_decode(damaged) -> None:
    root, bad = damaged
    assert check_images(root / "imagenet") == [bad]
    assert check_images(root / "imagenet" / "train" / CLASSES[1]) == [bad]
    assert check_images(root / "imagenet" / "val") == []
    assert check_images(root / "imagenet" / "train", limit=3) == []  # the first three, in sorted order
    with pytest.raises(SlotlabError, match="is not a folder"):
        check_images(root / "nowhere")


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("name", ["resnet50", "wide_resnet50_2"])
def test_imagenet_resnets_have_torchvisions_layers_without_biases(name: str) -> None:
    import torchvision

    with torch.device("meta"):
        ours = build_model(name, DenseFactory(), (3, 224, 224), 1000)
        theirs = getattr(torchvision.models, name)()
    assert [tuple(w.shape) for w in _weights(ours)] == [tuple(w.shape) for w in _weights(theirs)]
    assert not any(
        getattr(m, "bias", None) is not None for m in ours.modules() if not isinstance(m, nn.BatchNorm2d)
    )
    with torch.device("meta"):
        slots = build_model(name, SlotFactory(k=2), (3, 224, 224), 1000)
    bns = [m for m in slots.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == len([m for m in theirs.modules() if isinstance(m, nn.BatchNorm2d)])
    assert not any(bn.affine for bn in bns)  # non-affine for random-weight methods, as the factory decides


def test_resnet50_computes_what_torchvision_computes_with_the_same_weights() -> None:
    import torchvision

    torch.manual_seed(0)
    ours = build_model("resnet50", DenseFactory(), (3, 64, 64), 10).eval()
    theirs = torchvision.models.resnet50(num_classes=10).eval()
    with torch.no_grad():
        for mine, other in zip(_weights(ours), _weights(theirs), strict=True):
            mine.copy_(torch.randn_like(mine) * 0.05)
            other.copy_(mine)
        theirs.fc.bias.zero_()
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(SlotlabError, match="at least 32x32"):
        build_model("resnet50", DenseFactory(), (3, 16, 16), 10)
