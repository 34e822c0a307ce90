"""The file list of the torchvision datasets, and check/prepare on the real data root and on tiny temporary roots."""

import os
import re
from pathlib import Path
from urllib.error import URLError

import pytest

from slotlab import dataset_files
from slotlab.data import DATASETS
from slotlab.dataset_files import DAMAGED, MISSING, OK, all_ok, check, format_report, prepare
from slotlab.errors import SlotlabError

T10K_LABELS = "MNIST/raw/t10k-labels-idx1-ubyte"


def real_root() -> Path | None:
    return Path(os.environ["SLOTLAB_DATA"]).expanduser() if os.environ.get("SLOTLAB_DATA") else None


def real_file(rel: str) -> Path:
    root = real_root()
    if root is None:
        pytest.skip("SLOTLAB_DATA is not set: no prepared data root to take real files from")
    if not (root / rel).is_file():
        pytest.skip(f"SLOTLAB_DATA={root} has no {rel}")
    return root / rel


def by_name(statuses) -> dict[str, dataset_files.FileStatus]:
    return {s.path.name: s for s in statuses}


def test_the_real_data_root_checks_ok_for_the_datasets_it_holds() -> None:
    root = real_root()
    if root is None:
        pytest.skip("SLOTLAB_DATA is not set: no prepared data root to check")
    statuses = check(root)
    present = {s.dataset for s in statuses if s.state != MISSING}
    if not present:
        pytest.skip(f"SLOTLAB_DATA={root} holds none of {', '.join(dataset_files.FILES)}")
    mine = [s for s in statuses if s.dataset in present]
    assert [f"{s.path}: {s.state} {s.detail}" for s in mine if s.state != OK] == []
    assert format_report(mine, root).splitlines()[-1] == f"all {len(mine)} files ok under {root}"


def test_the_file_list_is_what_torchvision_checks_with_its_published_md5s() -> None:
    from torchvision import datasets

    for name, cls_name in dataset_files.TORCHVISION_CLASS.items():
        cls = getattr(datasets, cls_name)
        ours = {f.path: f for f in dataset_files.FILES[name]}
        required = {path for path, f in ours.items() if f.required}
        if cls_name == "CIFAR10":
            published = {f"{cls.base_folder}/{n}": md5 for n, md5 in cls.train_list + cls.test_list}
            published[f"{cls.base_folder}/{cls.meta['filename']}"] = cls.meta["md5"]
            assert required == set(published)  # what CIFAR10._check_integrity and _load_meta read
            assert all(ours[path].md5 == md5 for path, md5 in published.items())
            assert ours[cls.filename].md5 == cls.tgz_md5 and not ours[cls.filename].required
        else:
            raw = f"{cls_name}/raw"
            # MNIST._check_exists looks for the .gz names without their extension, unpacked in <class>/raw
            assert required == {f"{raw}/{Path(gz).stem}" for gz, _ in cls.resources}
            assert all(
                ours[f"{raw}/{gz}"].md5 == md5 and not ours[f"{raw}/{gz}"].required
                for gz, md5 in cls.resources
            )
    assert {n: i.torchvision_class for n, i in DATASETS.items() if i.torchvision_class} == (
        dataset_files.TORCHVISION_CLASS
    )


def test_damaged_and_missing_files_are_told_apart(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + bytes(60))  # truncated: wrong size
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(10_008))  # right size, wrong content
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")  # an archive, checked since it is there
    statuses = by_name(check(tmp_path, ["mnist"]))
    images, labels = statuses["t10k-images-idx3-ubyte"], statuses["t10k-labels-idx1-ubyte"]
    assert (images.state, images.detail) == (DAMAGED, "64 bytes, expected 7840016")
    assert images.expected_md5 == "2646ac647ad5339dbf082846283269ea" and images.path == raw / images.path.name
    assert labels.state == DAMAGED and labels.detail.startswith("MD5 ")
    assert statuses["t10k-labels-idx1-ubyte.gz"].state == DAMAGED
    assert not statuses["t10k-labels-idx1-ubyte.gz"].required
    assert statuses["train-images-idx3-ubyte"].state == MISSING
    assert "train-images-idx3-ubyte.gz" not in statuses  # absent archives are not needed once unpacked
    assert not all_ok(statuses.values())
    report = format_report(list(statuses.values()), tmp_path)
    assert re.search(r"mnist +damaged +MNIST/raw/t10k-images-idx3-ubyte +2646ac.* 64 bytes, expected", report)
    assert re.search(r"mnist +missing +MNIST/raw/train-images-idx3-ubyte ", report)
    assert report.splitlines()[-1].startswith("0 ok, 2 missing, 3 damaged under")
    assert "delete the damaged files and run `python -m slotlab data prepare" in report


def test_a_damaged_copy_of_a_real_file_is_damaged_and_the_copy_before_ok(tmp_path: Path) -> None:
    source = real_file(T10K_LABELS)
    target = tmp_path / T10K_LABELS
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes())
    assert by_name(check(tmp_path, ["mnist"]))[target.name].state == OK
    data = bytearray(target.read_bytes())
    data[5000] ^= 1
    target.write_bytes(bytes(data))
    status = by_name(check(tmp_path, ["mnist"]))[target.name]
    assert (status.state, status.path) == (DAMAGED, target)
    assert status.detail == f"MD5 {dataset_files.file_md5(target)}"
    message = dataset_files.problem_message(check(tmp_path, ["mnist"]), tmp_path, "mnist")
    assert (
        f"MNIST file {target} (MD5 " in message and "expected MD5 27ae3e4e09519cfbb04c329615203637" in message
    )
    assert "delete it" in message and "\n" not in message and "shared/" not in message


def test_missing_files_are_named_with_both_ways_to_get_them(tmp_path: Path) -> None:
    message = dataset_files.problem_message(check(tmp_path, ["cifar10"]), tmp_path, "cifar10")
    assert message == (
        f"CIFAR10 not found under {tmp_path}: missing in cifar-10-batches-py/: data_batch_1, data_batch_2, "
        "data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta; download it with "
        f"`python -m slotlab data prepare {tmp_path}` (online), or set SLOTLAB_DATA to a folder that holds "
        "these files"
    )
    assert dataset_files.problem_message(check(tmp_path, ["mnist"]), tmp_path, "cifar10") is None


def test_prepare_offline_names_what_is_missing_in_one_line(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    calls = []

    def offline(root, train, download):
        calls.append((root, train, download))
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://x/, got:\n<urlopen error>"
        )

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(SlotlabError) as error:
        prepare(tmp_path, ["mnist", "fashion-mnist"])
    message = str(error.value)
    assert calls == [(str(tmp_path), True, True)] * 2
    assert message.startswith(f"could not download into {tmp_path}: MNIST (RuntimeError: Error downloading ")
    assert "missing in MNIST/raw/: train-images-idx3-ubyte, train-labels-idx1-ubyte" in message
    assert "missing in FashionMNIST/raw/: train-images-idx3-ubyte" in message
    assert message.endswith("run it again online, or set SLOTLAB_DATA to a folder that holds these files")
    assert "\n" not in message and "shared/" not in message

    monkeypatch.setattr(
        torchvision.datasets, "CIFAR10", lambda *a, **k: (_ for _ in ()).throw(URLError("dns"))
    )
    with pytest.raises(SlotlabError, match=r"CIFAR10 \(URLError: <urlopen error dns>; missing in cifar-10-b"):
        prepare(tmp_path, ["cifar10"])
    statuses = prepare(tmp_path, ["cifar10"], download=False)  # only checks
    assert {s.state for s in statuses} == {MISSING} and len(calls) == 2


def test_prepare_downloads_only_what_is_not_ok_then_checks(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    source = real_file(T10K_LABELS).parent
    raw = tmp_path / "MNIST" / "raw"

    def download(root, train, download):  # stands in for torchvision's download: the files appear in raw/
        assert (root, train, download) == (str(tmp_path), True, True)
        raw.mkdir(parents=True, exist_ok=True)
        for spec in dataset_files.FILES["mnist"]:
            if spec.required:
                (tmp_path / spec.path).symlink_to(source / Path(spec.path).name)

    monkeypatch.setattr(torchvision.datasets, "MNIST", download)
    statuses = prepare(tmp_path, ["mnist"])
    assert [s.state for s in statuses if s.required] == [OK] * 4 and all_ok(statuses)
    monkeypatch.setattr(torchvision.datasets, "MNIST", lambda *a, **k: pytest.fail("downloaded again"))
    assert all_ok(prepare(tmp_path, ["mnist"]))


def test_unknown_dataset_names_the_ones_with_files(tmp_path: Path) -> None:
    with pytest.raises(SlotlabError, match="no file list for 'imagenet'; datasets read from files: mnist, "):
        check(tmp_path, ["imagenet"])
