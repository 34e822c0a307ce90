"""ImageNet (ILSVRC-2012) streamed from an image folder, with the standard ResNet augmentation.

Layout (what the usual preparation scripts make), under ``$SLOTLAB_DATA/imagenet``::

    train/<wnid>/<image>.JPEG     1.28 M images, one folder per class
    val/<wnid>/<image>.JPEG       50 k images, sorted into the same class folders

Classes are the sorted folder names (as ``torchvision.datasets.ImageFolder`` numbers them). ``val/`` is the test
set; the validation split for model selection is held out of ``train/`` with ``split_seed`` (10 000 images by
default, about 1 %, as IteRand does).

Transforms (He et al. 2016; torchvision's reference recipe; Edge-Popup's ImageNet loader):
    train: RandomResizedCrop(224), horizontal flip with p = 1/2
    eval:  Resize(256) (shorter side), CenterCrop(224)
Images reach the device as uint8 and are normalised there with the ImageNet mean and std.

Augmentation is a function of (epoch seed, image index): each image's transform runs under its own seeded
generator state, so the crops do not depend on the number of loader workers or of DDP ranks, and a resumed run
sees the crops it would have seen.

An image that does not decode stops the run with a one-line ``DataError`` that names the file (also from inside a
loader worker); ``check_images(folder)`` finds such files up front, cheaply, before a long job.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from slotlab.distributed import shard
from slotlab.errors import DataError, SlotlabError
from slotlab.init import stream_seed

RESIZE_RATIO = 256 / 224  # eval: resize the shorter side to 256 for a 224 crop
EVAL_BATCH_LIMIT = 256  # 224x224 float batches of 1000 would take 600 MB each


@dataclass
class FolderSplit:
    """Some images of a folder dataset: (path, class index) pairs."""

    samples: list[tuple[str, int]]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.long)


@functools.lru_cache(maxsize=4)
def _scan(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    classes, class_to_index = find_classes(str(folder))
    return classes, make_dataset(str(folder), class_to_index, extensions=IMG_EXTENSIONS)


def make_folder_splits(
    info, root: Path, val_size: int, split_seed: int, train_size: int
) -> tuple[FolderSplit, FolderSplit, FolderSplit]:
    """(train, val, test) of the folder dataset ``info``: ``train/`` minus a seeded validation hold-out, and
    ``val/`` as test. ``slotlab.data.make_splits`` wraps them in its ``Splits``."""
    base = Path(root) / info.folder
    for part in ("train", "val"):
        if not (base / part).is_dir():
            raise SlotlabError(
                f"{info.name} not found: expected {base / part}/<class>/<image> (ImageFolder layout); set "
                f"SLOTLAB_DATA to the folder that holds {info.folder}/train and {info.folder}/val"
            )
    try:
        classes, train = _scan(base / "train")
        test_classes, test = _scan(base / "val")
    except (FileNotFoundError, OSError) as error:
        raise SlotlabError(f"cannot read {base}: {error}; check the ImageFolder layout") from None
    if test_classes != classes:
        raise SlotlabError(
            f"{base / 'val'} has {len(test_classes)} class folders that differ from the {len(classes)} of "
            f"{base / 'train'}; sort val/ into the same class folders"
        )
    if len(classes) > info.num_classes:
        raise SlotlabError(
            f"{base} has {len(classes)} classes, more than the {info.num_classes} of {info.name}"
        )
    n_val = info.val_size if val_size < 0 else val_size
    if not 0 <= n_val < len(train):
        raise SlotlabError(f"val_size must be between 0 and {len(train) - 1} for {base}, got {n_val}")
    order = torch.randperm(
        len(train), generator=torch.Generator().manual_seed(stream_seed("split", split_seed))
    )
    val_idx, train_idx = order[:n_val].tolist(), order[n_val:].tolist()
    if train_size:
        train_idx = train_idx[:train_size]
    pick = lambda idx: FolderSplit([train[i] for i in idx], classes)  # noqa: E731
    return pick(train_idx), pick(val_idx), FolderSplit(test, classes)


def check_images(folder: Path | str, limit: int | None = None) -> list[Path]:
    """The image files under ``folder`` that PIL cannot open, in sorted order: a cheap check before a long run.

    ``folder`` is searched through (the ImageNet folder, its ``train/`` or ``val/``, or one class folder) for the
    files the loader reads, those with an image extension. Each file's header is read and checked
    (``Image.open`` and ``verify``), not its pixels, so this is quick, but an image whose data alone is cut short
    can pass; the run then stops at it with a ``DataError`` that names it. ``limit`` checks only the first
    ``limit`` files. slotlab never calls this itself: delete or replace what it returns, then start the run.
    """
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    base = Path(folder).expanduser()
    if not base.is_dir():
        raise SlotlabError(
            f"{base} is not a folder; give the image folder to check, e.g. $SLOTLAB_DATA/imagenet"
        )
    paths = sorted(
        Path(parent, name)
        for parent, _, names in os.walk(base, followlinks=True)
        for name in names
        if name.lower().endswith(IMG_EXTENSIONS)
    )
    bad = []
    for path in paths if limit is None else paths[:limit]:
        try:
            with Image.open(path) as image:
                image.verify()
        except _decode_errors():
            bad.append(path)
    return bad


def train_transform(size: int):
    from torchvision.transforms import v2

    return v2.Compose(
        [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor()]
    )


def eval_transform(size: int):
    from torchvision.transforms import v2

    return v2.Compose(
        [v2.Resize(round(size * RESIZE_RATIO), antialias=True), v2.CenterCrop(size), v2.PILToTensor()]
    )


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What PIL raises for an image it cannot decode."""
    from PIL import Image

    # OSError: not an image (UnidentifiedImageError), truncated, unreadable; the others: corrupt headers or chunks
    # in some of PIL's decoders, and images past PIL's decompression-bomb limit
    return (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


def _reason(error: BaseException) -> str:
    """One line on why PIL could not decode an image, without the path that its message may repeat."""
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return "not an image format PIL recognises"
    if isinstance(error, OSError) and error.strerror:  # FileNotFoundError, PermissionError, ...
        return error.strerror
    text = " ".join(str(error).split())
    if isinstance(error, OSError):
        return text or "OSError"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _Images(Dataset):
    """Reads image ``index`` and transforms it under the generator seed that comes with it (-1: no seed)."""

    def __init__(self, samples: list[tuple[str, int]], transform) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        from PIL import Image

        index, seed = key
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except _decode_errors() as error:
            raise DataError(
                f"image {path} cannot be decoded ({_reason(error)}); delete or replace it (to find every such "
                f"file first: slotlab.imagenet.check_images(folder))"
            ) from None
        if seed < 0:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image), label


def loader_workers(world_size: int = 1) -> int:
    """Image-decoding processes per rank: ``$SLOTLAB_LOADER_WORKERS``, else the CPUs shared out, at most 8."""
    if os.environ.get("SLOTLAB_LOADER_WORKERS"):
        return int(os.environ["SLOTLAB_LOADER_WORKERS"])
    return min(8, (os.cpu_count() or 1) // max(world_size, 1))


def _worker_message(error: SlotlabError) -> str | None:
    """The one-line message of ``error`` if torch re-raised it from a loader worker, else None.

    torch re-raises an exception of a worker process as a new one of the same class whose message is "Caught
    <class> in DataLoader worker process <n>." and the worker's whole traceback; its last line holds the message.
    """
    text = str(error)
    if not text.startswith(f"Caught {type(error).__name__} in DataLoader worker"):
        return None
    head = f"{type(error).__module__}.{type(error).__qualname__}: "
    for line in reversed(text.splitlines()):
        if line.startswith(head):
            return line[len(head) :]
    return None


class FolderBatches:
    """Batches of a ``FolderSplit`` on ``device``, with the interface of ``slotlab.data.Batches``.

    ``epoch(generator)`` shuffles with ``generator`` and applies the training augmentation; ``epoch()`` iterates in
    order with the evaluation transform. ``rank``/``world_size`` shard the order as ``Batches`` does.
    """

    def __init__(
        self,
        split: FolderSplit,
        info,
        batch_size: int,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        image_size: int | None = None,
        workers: int | None = None,
    ) -> None:
        self.split, self.batch_size = split, batch_size
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.image_size = image_size or info.input_shape[-1]
        self.workers = loader_workers(world_size) if workers is None else workers
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(info.mean, device=self.device).view(shape) * 255
        self.std = torch.tensor(info.std, device=self.device).view(shape) * 255

    def __len__(self) -> int:
        per_rank = -(-len(self.split) // self.world_size)
        return -(-per_rank // self.batch_size)

    def epoch(self, generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        if generator is not None:
            order = shard(torch.randperm(n, generator=generator), self.rank, self.world_size)
            base = int(torch.randint(0, 2**62, (1,), generator=generator))
            keys = [(i, base + i) for i in order.tolist()]
            transform, batch_size = train_transform(self.image_size), self.batch_size
        else:
            keys = [(i, -1) for i in range(self.rank, n, self.world_size)]
            transform, batch_size = eval_transform(self.image_size), min(self.batch_size, EVAL_BATCH_LIMIT)
        loader = DataLoader(
            _Images(self.split.samples, transform),
            batch_size=batch_size,
            sampler=keys,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        try:
            for images, labels in loader:
                images = images.to(self.device, non_blocking=True).float()
                yield (images - self.mean) / self.std, labels.to(self.device, non_blocking=True)
        except SlotlabError as error:
            message = _worker_message(error)
            if message is None:
                raise
            error.__traceback__ = None  # its frames hold the loader's workers; let them shut down now
            raise type(error)(message) from None
