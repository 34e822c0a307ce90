"""The files torchvision's MNIST, FashionMNIST and CIFAR10 read under a data root, and their checksums.

What torchvision (0.29) needs on disk offline, per dataset, and what can be verified:

* ``MNIST/raw`` and ``FashionMNIST/raw``: the four decompressed idx files. Offline, torchvision only checks that
  they exist (``MNIST._check_exists``), so a truncated or damaged file is read as it is. torchvision publishes MD5s
  for the ``.gz`` archives it downloads (``MNIST.resources``); the MD5 of each decompressed file below is that of
  the unpacked content of the archive with the published MD5. The ``.gz`` files are optional once unpacked
  (``required=False``): they are checked when present, and an intact one lets ``prepare`` unpack it again offline.
* ``cifar-10-batches-py``: the six pickled batches and ``batches.meta``, with the MD5s of ``CIFAR10.train_list``,
  ``test_list`` and ``meta`` (torchvision checks them on every load). The downloaded tarball
  ``cifar-10-python.tar.gz`` (``tgz_md5``) is optional, checked when present.

``check(root)`` reports each file as ok, missing or damaged (wrong size, else wrong MD5, hashed in 1 MiB chunks);
``prepare(root)`` downloads what is missing through torchvision and checks again.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from slotlab.errors import DataError, SlotlabError

OK, MISSING, DAMAGED = "ok", "missing", "damaged"


@dataclass(frozen=True)
class DatasetFile:
    dataset: str  # slotlab's name of the dataset
    path: str  # relative to the data root, with '/'
    md5: str
    size: int | None  # bytes; None where unknown
    required: bool = True  # False: a downloaded archive, not read once unpacked; checked only when present


@dataclass(frozen=True)
class FileStatus:
    dataset: str
    path: Path  # under the root that was checked
    state: str  # "ok" | "missing" | "damaged"
    expected_md5: str
    required: bool = True
    detail: str = ""  # for a damaged file: what is wrong with it (size or MD5)


TORCHVISION_CLASS: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}

_IDX_SIZES = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}


def _mnist_like(dataset: str, folder: str, files: dict[str, tuple[str, str, int]]) -> tuple[DatasetFile, ...]:
    """``files``: idx name -> (MD5 of the decompressed file, torchvision's MD5 of the .gz, size of the .gz)."""
    out = []
    for name, (md5, gz_md5, gz_size) in files.items():
        out.append(DatasetFile(dataset, f"{folder}/raw/{name}", md5, _IDX_SIZES[name]))
        out.append(DatasetFile(dataset, f"{folder}/raw/{name}.gz", gz_md5, gz_size, required=False))
    return tuple(out)


FILES: dict[str, tuple[DatasetFile, ...]] = {
    "mnist": _mnist_like(
        "mnist",
        "MNIST",
        {
            "train-images-idx3-ubyte": (
                "6bbc9ace898e44ae57da46a324031adb",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                9_912_422,
            ),
            "train-labels-idx1-ubyte": (
                "a25bea736e30d166cdddb491f175f624",
                "d53e105ee54ea40749a09fcbcd1e9432",
                28_881,
            ),
            "t10k-images-idx3-ubyte": (
                "2646ac647ad5339dbf082846283269ea",
                "9fb629c4189551a2d022fa330f9573f3",
                1_648_877,
            ),
            "t10k-labels-idx1-ubyte": (
                "27ae3e4e09519cfbb04c329615203637",
                "ec29112dd5afa0611ce80d1b7f02629c",
                4_542,
            ),
        },
    ),
    "fashion-mnist": _mnist_like(
        "fashion-mnist",
        "FashionMNIST",
        {
            "train-images-idx3-ubyte": (
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                26_421_880,
            ),
            "train-labels-idx1-ubyte": (
                "9018921c3c673c538a1fc5bad174d6f9",
                "25c81989df183df01b3e8a0aad5dffbe",
                29_515,
            ),
            "t10k-images-idx3-ubyte": (
                "8181f5470baa50b63fa0f6fddb340f0a",
                "bef4ecab320f06d8554ea6380940ec79",
                4_422_102,
            ),
            "t10k-labels-idx1-ubyte": (
                "15d484375f8d13e6eb1aabb0c3f46965",
                "bb300cfdad3c16e7a12a480ee83cd310",
                5_148,
            ),
        },
    ),
    "cifar10": tuple(
        DatasetFile("cifar10", f"cifar-10-batches-py/{name}", md5, size)
        for name, md5, size in (
            ("data_batch_1", "c99cafc152244af753f735de768cd75f", 31_035_704),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", 31_035_320),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751", 31_035_999),
            ("data_batch_4", "634d18415352ddfa80567beed471001a", 31_035_696),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", 31_035_623),
            ("test_batch", "40351d587109b95175f43aff81a1287e", 31_035_526),
            ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888", 158),
        )
    )
    + (
        DatasetFile(
            "cifar10", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", None, required=False
        ),
    ),
}


def file_md5(path: Path | str, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _names(datasets: Iterable[str] | None) -> list[str]:
    names = list(FILES) if datasets is None else list(datasets)
    unknown = [n for n in names if n not in FILES]
    if unknown:
        raise SlotlabError(
            f"no file list for {', '.join(map(repr, unknown))}; datasets read from files: {', '.join(FILES)}"
        )
    return names


def _status(root: Path, spec: DatasetFile) -> FileStatus | None:
    path = root / spec.path
    if not path.is_file():
        if not spec.required:
            return None  # an archive that is not needed once unpacked
        return FileStatus(spec.dataset, path, MISSING, spec.md5, spec.required)
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        detail = f"{size} bytes, expected {spec.size}"
        return FileStatus(spec.dataset, path, DAMAGED, spec.md5, spec.required, detail)
    md5 = file_md5(path)
    if md5 != spec.md5:
        return FileStatus(spec.dataset, path, DAMAGED, spec.md5, spec.required, f"MD5 {md5}")
    return FileStatus(spec.dataset, path, OK, spec.md5, spec.required)


def check(root: Path | str, datasets: Iterable[str] | None = None) -> list[FileStatus]:
    """The state of every file of ``datasets`` (default: all) under ``root``; optional archives only if present."""
    root = Path(root).expanduser()
    return [s for name in _names(datasets) for spec in FILES[name] if (s := _status(root, spec)) is not None]


def all_ok(statuses: Iterable[FileStatus]) -> bool:
    """No required file missing and no file damaged."""
    return all(s.state == OK or (s.state == MISSING and not s.required) for s in statuses)


def cli_command(action: str, root: Path | str) -> str:
    """The command line that runs ``action`` ("check" or "prepare") on ``root``, in backquotes."""
    return f"`python -m slotlab data {action} {shlex.quote(str(root))}`"


def _missing_part(missing: Sequence[FileStatus], root: Path) -> str:
    folders: dict[str, list[str]] = {}
    for s in missing:
        rel = s.path.relative_to(root)
        folders.setdefault(rel.parent.as_posix(), []).append(rel.name)
    return "; ".join(f"missing in {folder}/: {', '.join(names)}" for folder, names in folders.items())


def problem_message(statuses: Sequence[FileStatus], root: Path | str, dataset: str) -> str | None:
    """One line on what is wrong with the required files of ``dataset`` and how to fix it; None if nothing is."""
    root = Path(root).expanduser()
    cls, prepare_it = TORCHVISION_CLASS[dataset], cli_command("prepare", root)
    mine = [s for s in statuses if s.dataset == dataset and s.required]
    damaged = [s for s in mine if s.state == DAMAGED]
    missing = [s for s in mine if s.state == MISSING]
    if damaged:
        what = ", ".join(f"{s.path} ({s.detail}; expected MD5 {s.expected_md5})" for s in damaged)
        if len(damaged) == 1:
            message = (
                f"{cls} file {what} is damaged: delete it and run {prepare_it} (online) to download it again"
            )
        else:
            message = (
                f"{cls} files are damaged: {what}: delete them and run {prepare_it} (online) to download "
                f"them again"
            )
        if missing:
            message += f"; also {_missing_part(missing, root)}"
        return message
    if missing:
        return (
            f"{cls} not found under {root}: {_missing_part(missing, root)}; download it with {prepare_it} "
            f"(online), or set SLOTLAB_DATA to a folder that holds these files"
        )
    return None


def one_line(error: BaseException, limit: int = 200) -> str:
    """``Type: message`` of ``error`` on one line, shortened to ``limit`` characters."""
    text = " ".join(str(error).split())
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def prepare(
    root: Path | str, datasets: Iterable[str] | None = None, download: bool = True
) -> list[FileStatus]:
    """Download through torchvision the datasets with a required file missing or damaged, then ``check`` them.

    A damaged MNIST-like idx file is not replaced (torchvision only looks whether it exists): the report says so,
    and deleting it lets this unpack the intact ``.gz`` again, or download it. Offline, a dataset that cannot be
    downloaded raises one ``SlotlabError`` naming what is still missing.
    """
    root = Path(root).expanduser()
    statuses = {name: check(root, [name]) for name in _names(datasets)}
    failures = []
    for name, before in statuses.items():
        if not download or all_ok(before):
            continue
        from torchvision import datasets as tv_datasets

        root.mkdir(parents=True, exist_ok=True)
        cause = ""
        try:
            getattr(tv_datasets, TORCHVISION_CLASS[name])(str(root), train=True, download=True)
        except Exception as error:  # URLError/OSError offline; RuntimeError from torchvision; a damaged file
            cause = f"{one_line(error)}; "
        statuses[name] = check(root, [name])
        missing = [s for s in statuses[name] if s.required and s.state == MISSING]
        if missing:
            failures.append(f"{TORCHVISION_CLASS[name]} ({cause}{_missing_part(missing, root)})")
    if failures:
        raise DataError(
            f"could not download into {root}: {'; '.join(failures)}; run it again online, or set "
            f"SLOTLAB_DATA to a folder that holds these files"
        )
    return [s for name_statuses in statuses.values() for s in name_statuses]


def format_report(statuses: Sequence[FileStatus], root: Path | str | None = None) -> str:
    """A table of ``statuses`` (paths relative to ``root`` when given) and a summary line."""
    root = Path(root).expanduser() if root is not None else None

    def shown(s: FileStatus) -> str:
        if root is not None and s.path.is_relative_to(root):
            path = s.path.relative_to(root).as_posix()
        else:
            path = str(s.path)
        return path if s.required else f"{path} (archive)"

    rows = [("dataset", "state", "file", "expected MD5", "detail")]
    rows += [(s.dataset, s.state, shown(s), s.expected_md5, s.detail) for s in statuses]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    where = f" under {root}" if root is not None else ""
    if all_ok(statuses):
        lines.append(f"all {len(statuses)} files ok{where}")
    else:
        counts = {state: sum(s.state == state for s in statuses) for state in (OK, MISSING, DAMAGED)}
        fix = "; delete the damaged files" if counts[DAMAGED] else ""
        if root is not None:
            fix += f"{' and' if fix else ';'} run {cli_command('prepare', root)} (online)"
        lines.append(f"{counts[OK]} ok, {counts[MISSING]} missing, {counts[DAMAGED]} damaged{where}{fix}")
    return "\n".join(lines)
