"""Datasets held in memory as uint8 tensors, with a seeded validation split and on-device batching.

MNIST, Fashion-MNIST and CIFAR-10 load through ``torchvision.datasets`` from ``$SLOTLAB_DATA`` (else the
project's ``data/`` folder). Whole datasets are small (CIFAR-10 is 150 MB as uint8), so each is read once per
process and batches are cut, normalised and augmented on the training device: no worker processes, no per-image
Python calls, and the same code path on a laptop CPU and on a GPU. ImageNet, too large for memory, streams from
an image folder instead (``slotlab.imagenet``), behind the same batch interface.

Randomness: the train/validation split comes from ``split_seed``; the order and augmentation of epoch ``e`` come
from a generator seeded with ``(data_seed, e)``, so a resumed run sees exactly the batches it would have seen.
Under DistributedDataParallel each rank takes its shard of that same order (``slotlab.distributed.shard``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from slotlab import dataset_files
from slotlab.distributed import shard
from slotlab.errors import DataError, SlotlabError
from slotlab.imagenet import FolderBatches, make_folder_splits
from slotlab.init import stream_seed


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    torchvision_class: str | None  # None: synthetic, made in memory
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    val_size: int  # default number of training examples held out for validation
    description: str
    folder: str | None = (
        None  # streamed from $SLOTLAB_DATA/<folder>/{train,val}/<class>/<image> (ImageFolder)
    )


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist", "MNIST", (1, 28, 28), 10, (0.1307,), (0.3081,), 10_000, "MNIST digits, 60k train / 10k test"
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        "FashionMNIST",
        (1, 28, 28),
        10,
        (0.2860,),
        (0.3530,),
        10_000,
        "Fashion-MNIST, 60k/10k",
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        "CIFAR10",
        (3, 32, 32),
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2430, 0.2610),
        5_000,
        "CIFAR-10, 50k train / 10k test",
    ),
    "synthetic": DatasetInfo(
        "synthetic",
        None,
        (1, 28, 28),
        10,
        (0.5,),
        (0.25,),
        300,
        "tiny learnable 1x28x28 set for tests (2k/500)",
    ),
    "synthetic-cifar": DatasetInfo(
        "synthetic-cifar", None, (3, 32, 32), 10, (0.5,) * 3, (0.25,) * 3, 300, "tiny 3x32x32 set for tests"
    ),
    "imagenet": DatasetInfo(
        "imagenet",
        None,
        (3, 224, 224),
        1000,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        10_000,
        "ImageNet (ILSVRC-2012) from $SLOTLAB_DATA/imagenet/{train,val}; 224x224 crops",
        folder="imagenet",
    ),
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def is_synthetic(name: str) -> bool:
    """Whether ``name`` is a synthetic stand-in made in memory (its accuracies say nothing about a paper's)."""
    info = DATASETS[name]
    return info.torchvision_class is None and info.folder is None


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise SlotlabError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def data_root() -> Path:
    """``$SLOTLAB_DATA`` if set, else the ``data/`` folder of the project checkout."""
    if os.environ.get("SLOTLAB_DATA"):
        return Path(os.environ["SLOTLAB_DATA"]).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


@dataclass
class Split:
    """Images as uint8 (N, C, H, W) and labels as int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Splits:
    info: DatasetInfo
    train: Split  # or, for an image-folder dataset, a slotlab.imagenet.FolderSplit
    val: Split
    test: Split


def _synthetic(info: DatasetInfo, train: bool) -> Split:
    """Ten fixed random prototypes plus noise: learnable in a few steps, different for every class."""
    gen = torch.Generator().manual_seed(1234)
    prototypes = torch.rand((info.num_classes, *info.input_shape), generator=gen)
    count = 2000 if train else 500
    gen.manual_seed(5678 if train else 9012)
    labels = torch.randint(0, info.num_classes, (count,), generator=gen)
    noisy = prototypes[labels] * 0.6 + torch.rand((count, *info.input_shape), generator=gen) * 0.4
    return Split((noisy * 255).round().to(torch.uint8), labels)


@functools.lru_cache(maxsize=8)
def _load_torchvision(info: DatasetInfo, root: Path, train: bool, download: bool) -> Split:
    from torchvision import datasets

    cls = getattr(datasets, info.torchvision_class)
    try:
        ds = cls(str(root), train=train, download=download)
    except Exception as error:  # offline: RuntimeError, URLError/OSError; a bad file: any error
        raise DataError(_load_failure(info, root, error)) from None
    images = torch.as_tensor(ds.data)
    if images.ndim == 3:  # MNIST-like (N, H, W)
        images = images.unsqueeze(1)
    else:  # CIFAR (N, H, W, C)
        images = images.permute(0, 3, 1, 2)
    return Split(images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long))


def _load_failure(info: DatasetInfo, root: Path, error: Exception) -> str:
    """One line on why torchvision could not load ``info`` from ``root``: the missing or damaged files, by name."""
    if info.name in dataset_files.FILES:
        message = dataset_files.problem_message(dataset_files.check(root, [info.name]), root, info.name)
        if message:
            return message
    return (
        f"cannot load {info.torchvision_class} from {root} ({dataset_files.one_line(error)}); its files look "
        f"intact: run {dataset_files.cli_command('check', root)} to see them"
    )


def load_split(name: str, train: bool, root: Path | None = None, download: bool = True) -> Split:
    """The full official train or test split of ``name``."""
    info = dataset_info(name)
    if info.folder is not None:
        raise SlotlabError(f"{name} is streamed from an image folder, not held in memory; use make_splits")
    if info.torchvision_class is None:
        return _synthetic(info, train)
    return _load_torchvision(info, Path(root) if root else data_root(), train, download)


def make_splits(
    name: str,
    val_size: int = -1,
    split_seed: int = 0,
    train_size: int = 0,
    root: Path | None = None,
    download: bool = True,
    val_indices: str | Path = "",
) -> Splits:
    """Train/validation split of the official training set (seeded), and the official test set.

    ``val_indices``: a file of the training-set indices to hold out for validation (see ``read_indices``); the
    other examples train, in index order. It replaces ``val_size`` and ``split_seed``, as the fixed splits that
    the released Slot Machines code ships (MNIST 50 000 / 10 000, CIFAR-10 45 000 / 5 000).
    """
    info = dataset_info(name)
    if val_indices and info.folder is not None:
        raise SlotlabError(f"val_indices applies to in-memory datasets; {name} is split by its image folders")
    if info.folder is not None:
        train, val, test = make_folder_splits(
            info, Path(root) if root else data_root(), val_size, split_seed, train_size
        )
        return Splits(info, train, val, test)
    full = load_split(name, True, root, download)
    test = load_split(name, False, root, download)
    if val_indices:
        val_idx = read_indices(val_indices, len(full))
        held = torch.zeros(len(full), dtype=torch.bool)
        held[val_idx] = True
        train_idx = torch.nonzero(~held).flatten()
    else:
        n_val = info.val_size if val_size < 0 else val_size
        if not 0 <= n_val < len(full):
            raise SlotlabError(f"val_size must be between 0 and {len(full) - 1} for {name}, got {n_val}")
        order = torch.randperm(
            len(full), generator=torch.Generator().manual_seed(stream_seed("split", split_seed))
        )
        val_idx, train_idx = order[:n_val], order[n_val:]
    if train_size:
        train_idx = train_idx[:train_size]
    return Splits(
        info,
        Split(full.images[train_idx], full.labels[train_idx]),
        Split(full.images[val_idx], full.labels[val_idx]),
        test,
    )


def read_indices(path: str | Path, size: int) -> torch.Tensor:
    """The distinct indices in ``[0, size)`` stored at ``path``: a tensor saved with ``torch.save`` (``.pt``,
    as the released Slot Machines code ships its splits) or text with whitespace-separated integers."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SlotlabError(f"val_indices file {path} not found; give a .pt tensor or a text file of indices")
    try:
        if path.suffix == ".pt":
            indices = torch.as_tensor(torch.load(path, map_location="cpu", weights_only=True))
        else:
            indices = torch.tensor([int(word) for word in path.read_text().split()])
    except (RuntimeError, ValueError, TypeError, OSError) as error:
        raise SlotlabError(
            f"cannot read indices from {path} ({error}); give a .pt tensor or integers as text"
        ) from None
    indices = indices.flatten()
    if indices.numel() == 0:
        raise SlotlabError(f"{path} holds no indices; indices must lie in [0, {size - 1}]")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise SlotlabError(f"{path} holds {indices.dtype} values; indices must be integers")
    indices = indices.long()
    if indices.min() < 0 or indices.max() >= size:
        raise SlotlabError(f"{path}: indices must lie in [0, {size - 1}] for this training set")
    if torch.unique(indices).numel() != indices.numel():
        raise SlotlabError(f"{path} repeats indices; a validation split holds each example once")
    if indices.numel() >= size:
        raise SlotlabError(f"{path} holds every training example; leave some to train on")
    return indices


def epoch_generator(data_seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's order and augmentation: depends on (seed, epoch) only."""
    return torch.Generator().manual_seed(stream_seed(f"data-epoch-{epoch}", data_seed))


def make_batches(
    split,
    info: DatasetInfo,
    batch_size: int,
    device: torch.device | str = "cpu",
    augment: bool = False,
    rank: int = 0,
    world_size: int = 1,
    normalize: bool = True,
    crop: bool = True,
):
    """The batches of ``split``: in memory (``Batches``) or streamed from an image folder (``FolderBatches``)."""
    if isinstance(split, Split):
        return Batches(split, info, batch_size, device, augment, rank, world_size, normalize, crop)
    if not (normalize and crop):
        raise SlotlabError(
            f"normalize and crop apply to in-memory datasets; {info.name} streams from folders"
        )
    return FolderBatches(split, info, batch_size, device, rank, world_size)


class Batches:
    """Batches of one split on ``device``: normalised float images and labels.

    ``epoch(None)`` iterates in order (evaluation). With ``augment``, each image is randomly cropped
    from its 4-pixel zero-padded version and flipped horizontally with probability 1/2; with ``crop=False`` it is
    only flipped (the released Slot Machines code's CIFAR-10 pipeline). ``normalize=False`` feeds pixels in
    [0, 1] instead of standardising by the dataset's mean and std (that code's MNIST pipeline: ``ToTensor()``).

    ``rank``/``world_size``: this process's shard (see ``slotlab.distributed.shard``); ``batch_size`` is then the
    per-rank batch. Augmentation draws are made for the whole global batch and sliced like the images, so each
    image is augmented as in a single-process run.
    """

    def __init__(
        self,
        split: Split,
        info: DatasetInfo,
        batch_size: int,
        device: torch.device | str = "cpu",
        augment: bool = False,
        rank: int = 0,
        world_size: int = 1,
        normalize: bool = True,
        crop: bool = True,
    ) -> None:
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.augment, self.crop = augment, crop
        self.rank, self.world_size = rank, world_size
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        shape = (1, -1, 1, 1)
        channels = len(info.mean)
        mean, std = (info.mean, info.std) if normalize else ((0.0,) * channels, (1.0,) * channels)
        self.mean = torch.tensor(mean, device=self.device).view(shape) * 255
        self.std = torch.tensor(std, device=self.device).view(shape) * 255

    def __len__(self) -> int:
        """Batches per epoch of this rank (training, padded: the same on every rank)."""
        per_rank = -(-len(self.labels) // self.world_size)
        return -(-per_rank // self.batch_size)

    def epoch(self, generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images (B, C, H, W) float32, labels (B,)); shuffled and augmented when a generator is given."""
        n = len(self.labels)
        order: torch.Tensor | None = None
        if generator is not None:
            order = shard(torch.randperm(n, generator=generator), self.rank, self.world_size).to(self.device)
        elif self.world_size > 1:
            order = torch.arange(self.rank, n, self.world_size, device=self.device)
        count = n if order is None else len(order)
        for start in range(0, count, self.batch_size):
            idx = (
                order[start : start + self.batch_size]
                if order is not None
                else slice(start, start + self.batch_size)
            )
            images = self.images[idx].float()
            if self.augment and generator is not None:
                images = random_crop_flip(
                    images,
                    generator,
                    padding=4 if self.crop else 0,
                    rank=self.rank,
                    world_size=self.world_size,
                )
            yield (images - self.mean) / self.std, self.labels[idx]


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch (B, C, H, W) and a horizontal flip with p = 1/2.

    The draws are made for the global batch of ``B * world_size`` images and rank ``rank`` takes its
    interleaved share, the same positions its images hold in the global batch.
    """
    b, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    total, mine = b * world_size, slice(rank, None, world_size)
    dy = torch.randint(0, 2 * padding + 1, (total,), generator=generator)[mine].to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (total,), generator=generator)[mine].to(images.device)
    flip = (torch.rand(total, generator=generator) < 0.5)[mine].to(images.device)
    rows = dy[:, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=images.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
