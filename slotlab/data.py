"""Datasets held in memory as uint8 tensors, with a seeded validation split and on-device batching.

MNIST, Fashion-MNIST and CIFAR-10 load through ``torchvision.datasets`` from ``$SLOTLAB_DATA`` (else the
project's ``data/`` folder). Whole datasets are small (CIFAR-10 is 150 MB as uint8), so each is read once per
process and batches are cut, normalised and augmented on the training device: no worker processes, no per-image
Python calls, and the same code path on a laptop CPU and on a GPU.

Randomness: the train/validation split comes from ``split_seed``; the order and augmentation of epoch ``e`` come
from a generator seeded with ``(data_seed, e)``, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from slotlab.errors import SlotlabError
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
}


def dataset_names() -> list[str]:
    return list(DATASETS)


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
    train: Split
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
    except (
        Exception
    ) as error:  # torchvision raises RuntimeError offline, URLError/OSError when a download fails
        raise SlotlabError(
            f"{info.torchvision_class} not found under {root} ({type(error).__name__}); set SLOTLAB_DATA to a folder "
            f"that holds it (e.g. the output of shared/data/prepare.sh) or run once online to download it"
        ) from None
    images = torch.as_tensor(ds.data)
    if images.ndim == 3:  # MNIST-like (N, H, W)
        images = images.unsqueeze(1)
    else:  # CIFAR (N, H, W, C)
        images = images.permute(0, 3, 1, 2)
    return Split(images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long))


def load_split(name: str, train: bool, root: Path | None = None, download: bool = True) -> Split:
    """The full official train or test split of ``name``."""
    info = dataset_info(name)
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
) -> Splits:
    """Train/validation split of the official training set (seeded), and the official test set."""
    info = dataset_info(name)
    full = load_split(name, True, root, download)
    test = load_split(name, False, root, download)
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


def epoch_generator(data_seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's order and augmentation: depends on (seed, epoch) only."""
    return torch.Generator().manual_seed(stream_seed(f"data-epoch-{epoch}", data_seed))


class Batches:
    """Batches of one split on ``device``: normalised float images and labels.

    ``shuffle_seed=None`` iterates in order (evaluation). With ``augment``, each image is randomly cropped
    from its 4-pixel zero-padded version and flipped horizontally with probability 1/2.
    """

    def __init__(
        self,
        split: Split,
        info: DatasetInfo,
        batch_size: int,
        device: torch.device | str = "cpu",
        augment: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.augment = augment
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(info.mean, device=self.device).view(shape) * 255
        self.std = torch.tensor(info.std, device=self.device).view(shape) * 255

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def epoch(self, generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images (B, C, H, W) float32, labels (B,)); shuffled and augmented when a generator is given."""
        n = len(self.labels)
        order = torch.randperm(n, generator=generator).to(self.device) if generator is not None else None
        for start in range(0, n, self.batch_size):
            idx = (
                order[start : start + self.batch_size]
                if order is not None
                else slice(start, start + self.batch_size)
            )
            images = self.images[idx].float()
            if self.augment and generator is not None:
                images = random_crop_flip(images, generator)
            yield (images - self.mean) / self.std, self.labels[idx]


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch (B, C, H, W) and a horizontal flip with p = 1/2."""
    b, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
    rows = dy[:, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=images.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
