"""Packed datasets: shards written deterministically, read back exactly, resumed, and hostile ones refused."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from launcher.errors import LauncherError
from launcher.staging.pack import JOURNAL, PackError, Source, pack, plan_pack
from launcher.storage.local import LocalStore
from launcher.storage.shards import (
    INDEX,
    ShardError,
    fetch_shard,
    read_index,
    read_members,
    read_samples,
    stratified_take,
)
from tests.launcher.storage.conftest import StoreKind


def png(shade: int, size: int = 6) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), (shade % 256, 30, 90)).save(out, "PNG")
    return out.getvalue()


def imagefolder(root: Path, per_class: tuple[int, ...] = (9, 6, 3), val: int = 2) -> Path:
    for c, n in enumerate(per_class):
        for split, count in (("train", n), ("val", val)):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"img.{i}.png").write_bytes(png(c * 50 + i))
    return root


def quiet(_line: str) -> None:
    pass


def contents(folder: Path) -> dict[str, bytes]:
    """The files of a folder, except the packer's progress records (they hold the source files' mtimes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and JOURNAL not in p.parts}  # fmt: skip


def test_pack_then_read_back_gives_every_image_byte_for_byte_with_its_class(tmp_path: Path) -> None:
    src = imagefolder(tmp_path / "src")
    result = pack(str(src), str(tmp_path / "out"), shard_size=2500, log=quiet)
    index = result.index
    assert (index.layout, index.classes, index.samples("train"), index.samples("val")) == (
        "imagefolder",
        ("c0", "c1", "c2"),
        18,
        6,
    )
    assert len(index.splits["train"]) > 3 and result.written == len(index.shards())
    seen = {}
    for shard in index.shards():
        path = tmp_path / "out" / shard.name
        assert path.stat().st_size == shard.bytes
        samples = list(read_samples(path))
        assert len(samples) == shard.samples
        for (key, members), label in zip(samples, shard.labels):
            assert set(members) == {"png", "cls"} and int(members["cls"]) == label
            seen[key] = members["png"]
    originals = {k: v for k, v in contents(src).items()}
    assert len(seen) == len(originals)
    for key, data in seen.items():  # train/c0/img_3 <- train/c0/img.3.png
        split, cls, stem = key.split("/")
        assert originals[f"{split}/{cls}/{stem.replace('_', '.')}.png"] == data
        assert index.classes.index(cls) in {label for s in index.shards() for label in s.labels}
    assert sorted(p.name for p in (tmp_path / "out" / JOURNAL).iterdir()) == sorted(
        f"{s.name}.json" for s in index.shards()
    )


def test_the_same_input_gives_the_same_shards_and_hashes_anywhere(tmp_path: Path, s3_kind: StoreKind) -> None:
    src = imagefolder(tmp_path / "src")
    copy = tmp_path / "copy"
    for key, data in contents(src).items():  # the same files written again: new mtimes, other order on disk
        (copy / key).parent.mkdir(parents=True, exist_ok=True)
        (copy / key).write_bytes(data)
    a = pack(str(src), str(tmp_path / "a"), shard_size=2500, workers=1, log=quiet).index
    b = pack(str(copy), str(tmp_path / "b"), shard_size=2500, workers=4, log=quiet).index
    remote = s3_kind.store()
    c = pack(str(src), remote.uri, shard_size=2500, dest_store=remote, log=quiet).index
    assert a.to_bytes() == b.to_bytes() == c.to_bytes()
    assert contents(tmp_path / "a") == contents(tmp_path / "b")
    assert {o.key for o in remote.list("") if not o.key.startswith(JOURNAL)} == {INDEX, *(s.name for s in a.shards())}


class FailingStore(LocalStore):
    """Fails the n-th shard upload, as a crash midway would stop the pack."""

    def __init__(self, uri: str, fail_at: int) -> None:
        super().__init__(uri)
        self.fail_at, self.puts = fail_at, 0

    def put(self, key, src, progress=None, sha256=None):  # type: ignore[no-untyped-def]
        self.puts += 1
        if self.puts == self.fail_at:
            raise OSError("disk gone")
        return super().put(key, src, progress, sha256)


def test_a_pack_stopped_midway_resumes_without_redoing_finished_shards(tmp_path: Path) -> None:
    src = imagefolder(tmp_path / "src")
    reference = pack(str(src), str(tmp_path / "ref"), shard_size=2500, log=quiet).index
    broken = FailingStore(str(tmp_path / "out"), fail_at=4)
    with pytest.raises(OSError):
        pack(str(src), broken.uri, shard_size=2500, workers=1, dest_store=broken, log=quiet)
    assert read_index(broken) is None  # no index: nothing reads the partial pack
    again = FailingStore(str(tmp_path / "out"), fail_at=0)
    result = pack(str(src), again.uri, shard_size=2500, workers=1, dest_store=again, log=quiet)
    assert result.reused >= 3 and result.written + result.reused == len(reference.shards()) and result.written >= 1
    assert again.puts == result.written  # the finished shards were not uploaded again
    assert result.index.to_bytes() == reference.to_bytes()
    assert contents(tmp_path / "out") == contents(tmp_path / "ref")
    # a changed source file changes its shard's plan: that shard is packed again, not reused
    first = sorted((src / "train" / "c0").iterdir())[0]
    first.write_bytes(png(200, size=7))
    third = pack(str(src), again.uri, shard_size=2500, workers=1, dest_store=again, log=quiet)
    assert third.written == 1 and third.index.to_bytes() != reference.to_bytes()
    assert pack(str(src), again.uri, shard_size=2500, dest_store=again, log=quiet).written == 0  # nothing changed


def tar_with(tmp_path: Path, *infos: tuple[tarfile.TarInfo, bytes]) -> Path:
    path = tmp_path / "hostile.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def member(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    return info, data


@pytest.mark.parametrize(
    ("infos", "says"),
    [
        ([member("../evil.png")], "unsafe name"),
        ([member("/etc/evil.png")], "unsafe name"),
        ([member("/evil.png")], "unsafe name"),
        ([member("c:evil.png")], "unsafe name"),
        ([member("a//b.png")], "unsafe name"),
        ([member("a/.png")], "without a key"),
        ([member("a/./b.png")], "unsafe name"),
        ([member("a.png"), member("a.cls", kind=tarfile.SYMTYPE, link="/etc/passwd")], "link"),
        ([member("a.png", kind=tarfile.LNKTYPE, link="b.png")], "link"),
        ([member("a.png", kind=tarfile.CHRTYPE)], "device"),
        ([member("a.png", kind=tarfile.DIRTYPE)], "non-file"),
        ([member("noext")], "without a key"),
        ([member("a.png"), member("b.png"), member("a.cls")], "repeats the key"),
    ],
)
def test_hostile_shards_are_refused(tmp_path: Path, infos: list, says: str) -> None:
    path = tar_with(tmp_path, *infos)
    with pytest.raises(ShardError, match=says) as err:
        read_members(path, "train-000007.tar")
    assert "train-000007.tar" in str(err.value)


def test_a_member_header_claiming_a_huge_size_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("a.png")
    info.size = 1 << 40
    path = tmp_path / "huge.tar"
    path.write_bytes(info.tobuf(tarfile.PAX_FORMAT) + b"\0" * 2048)
    with pytest.raises(ShardError, match="more than it can"):
        read_members(path, "huge.tar")
    info.size = 4096  # within the limit but past the end of the file
    path.write_bytes(info.tobuf(tarfile.PAX_FORMAT) + b"\0" * 1024)
    with pytest.raises(ShardError, match="more than it can"):
        read_members(path)
    path.write_bytes(b"not a tar at all" * 64)
    with pytest.raises(ShardError, match="damaged"):
        read_members(path)


def test_an_index_naming_a_missing_or_damaged_shard_is_refused_with_its_name(
    tmp_path: Path, s3_kind: StoreKind
) -> None:
    store = s3_kind.store()
    index = pack(str(imagefolder(tmp_path / "src")), store.uri, shard_size=2500, dest_store=store, log=quiet).index
    gone, damaged = index.shards()[0], index.shards()[1]
    store.delete([gone.name])
    with pytest.raises(ShardError, match=f"{gone.name} listed in the dataset's index is missing"):
        fetch_shard(store, gone, tmp_path / "cache" / gone.name)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\0" * damaged.bytes)  # right size, wrong bytes
    store.put(damaged.name, bad)
    with pytest.raises(ShardError, match=f"{damaged.name} is damaged"):
        fetch_shard(store, damaged, tmp_path / "cache" / damaged.name)
    assert not list((tmp_path / "cache").iterdir())  # nothing unverified is left in the cache
    store.put_bytes(INDEX, b'{"format": "launcher-shards/1", "splits": {"train": [{"name": "../x.tar"}]}}')
    with pytest.raises(ShardError, match="index .* is damaged"):
        read_index(store)


def test_what_cannot_be_packed_is_refused_in_one_line(tmp_path: Path) -> None:
    only_val = tmp_path / "only-val"
    (only_val / "val" / "c0").mkdir(parents=True)
    (only_val / "val" / "c0" / "a.png").write_bytes(png(1))
    with pytest.raises(PackError, match="no training images"):
        plan_pack(Source(str(only_val)))
    mixed = imagefolder(tmp_path / "mixed")
    (mixed / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(PackError, match="mixes layouts"):
        plan_pack(Source(str(mixed)))
    broken = imagefolder(tmp_path / "broken")
    (broken / "train" / "c1" / "torn.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(PackError, match=r"train/c1/torn.png is not a readable image") as err:
        pack(str(broken), str(tmp_path / "out"), log=quiet)
    assert "\n" not in str(err.value)
    with pytest.raises(LauncherError, match="not a size"):
        from launcher.storage.shards import parse_size

        parse_size("lots")


def test_a_yolo_dataset_packs_images_with_their_label_files(tmp_path: Path) -> None:
    from launcher.runtime.datasets import write_shapes

    src = write_shapes(tmp_path / "shapes", train=12, val=4, size=16)
    index = pack(str(src), str(tmp_path / "out"), shard_size=8000, log=quiet).index
    assert index.layout == "yolo" and index.classes == ("rectangle", "ellipse") and "names:" in index.data_yaml
    assert (index.samples("train"), index.samples("val")) == (12, 4)
    shard = index.splits["train"][0]
    for key, members in read_samples(tmp_path / "out" / shard.name):
        split, stem = key.split("/")
        assert members["png"] == (src / "images" / split / f"{stem}.png").read_bytes()
        assert members["txt"] == (src / "labels" / split / f"{stem}.txt").read_bytes()


def test_a_fraction_is_stratified_and_lies_in_the_first_shards(tmp_path: Path) -> None:
    index = pack(str(imagefolder(tmp_path / "src", per_class=(20, 10, 4))), str(tmp_path / "out"), shard_size=2500,
                 log=quiet).index  # fmt: skip
    shards = index.splits["train"]
    kept = stratified_take(shards, 0.5)
    labels = [shards[i].labels[j] for i, j in kept]
    assert [labels.count(c) for c in range(3)] == [10, 5, 2]
    assert max(i for i, _ in kept) < len(shards) - 2  # the rest of the shards are never needed
    assert [shards[i].labels[j] for i, j in stratified_take(shards, 0.01)].count(2) == 1  # at least one per class


def test_the_cli_packs_lists_and_refuses(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from launcher.cli import main

    src = imagefolder(tmp_path / "src")
    runner = CliRunner()
    dry = runner.invoke(main, ["data", "pack", str(src), str(tmp_path / "out"), "--shard-size", "3KB", "--dry-run"])
    assert dry.exit_code == 0 and "train: 18 samples in" in dry.output and not (tmp_path / "out").exists()
    done = runner.invoke(
        main, ["data", "pack", str(src), str(tmp_path / "out"), "--shard-size", "3KB", "--workers", "2"]
    )
    assert done.exit_code == 0, done.output
    assert "packed" in done.output and "files/s" in done.output
    listed = runner.invoke(main, ["data", "ls", str(tmp_path / "out"), "--json"])
    body = json.loads(listed.output)
    assert body["splits"]["train"]["samples"] == 18 and body["classes"] == ["c0", "c1", "c2"]
    plain = runner.invoke(main, ["data", "ls", str(src)])
    assert plain.exit_code == 2 and "holds no packed dataset" in plain.output and "Traceback" not in plain.output
    bad = runner.invoke(main, ["data", "pack", str(src / "train"), str(tmp_path / "x")])
    assert bad.exit_code != 0 and "neither an ImageFolder" in bad.output and "Traceback" not in bad.output


def test_a_source_in_a_store_packs_to_the_same_shards_as_the_folder(tmp_path: Path, s3_kind: StoreKind) -> None:
    src = imagefolder(tmp_path / "src")
    remote = s3_kind.store()
    for key, data in contents(src).items():
        (tmp_path / "one").write_bytes(data)
        remote.put(key, tmp_path / "one")
    local = pack(str(src), str(tmp_path / "a"), shard_size=2500, log=quiet).index
    from_store = pack(remote.uri, str(tmp_path / "b"), shard_size=2500, source_store=remote, log=quiet).index
    assert from_store.to_bytes() == local.to_bytes() and contents(tmp_path / "a") == contents(tmp_path / "b")


def test_the_fast_header_reader_agrees_with_tarfile_and_leaves_anything_unusual_to_it(tmp_path: Path) -> None:
    from launcher.storage import shards

    path = tmp_path / "s.tar"
    long_key = "train/" + "d" * 120 + "/x"  # a PAX header: only tarfile reads that
    with open(path, "wb") as out:
        shards.write_shard(out, [("train/c0/a.png", b"A" * 700), ("train/c0/a.cls", b"0"), ("train/c1/b.png", b"B")])
    fast = shards._plain_headers(path, path.stat().st_size)
    assert fast is not None and [(i.name, i.offset_data, i.size) for i in fast] == [
        (i.name, i.offset_data, i.size) for i in tarfile.open(path).getmembers()
    ]
    with open(path, "wb") as out:
        shards.write_shard(out, [(f"{long_key}.png", b"A"), (f"{long_key}.cls", b"0")])
    assert shards._plain_headers(path, path.stat().st_size) is None
    assert [s.key for s in read_members(path)] == [long_key]
    with open(path, "wb") as out:
        shards.write_shard(out, [("a.png", b"A")])
    raw = bytearray(path.read_bytes())
    raw[0] = ord("b")  # the name changes, the checksum does not: tarfile's verdict
    path.write_bytes(bytes(raw))
    assert shards._plain_headers(path, len(raw)) is None
    with pytest.raises(ShardError, match="damaged"):
        read_members(path)


def test_the_one_pass_member_table_agrees_with_the_general_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from launcher.storage import shards

    path = tmp_path / "s.tar"
    members = [(f"train/c{i % 3}/{i:04d}.{ext}", bytes([i % 251]) * (i * 37 % 1500) if ext == "png" else b"1")
               for i in range(40) for ext in ("png", "cls")] + [("top.jpg", b"J" * 513), ("top.txt", b"0 0.5")]  # fmt: skip
    with open(path, "wb") as out:
        shards.write_shard(out, members)
    assert shards._plain_table(path, path.stat().st_size, shards.MAX_MEMBER) is not None  # the fast path reads it
    fast = read_members(path)
    images = [(s.members[0].offset, s.members[0].size) for s in fast]  # what the trainer reads: each image's place
    assert shards.read_images(path) == images
    monkeypatch.setattr(shards, "_plain_table", lambda *_a: None)  # the general path: tarfile's headers
    assert fast is not None and fast == read_members(path) and len(fast) == 41 and shards.read_images(path) == images
    with open(path, "rb") as f:  # every offset and size points at the member's bytes
        got = {f"{s.key}.{m.ext}": os.pread(f.fileno(), m.size, m.offset) for s in fast for m in s.members}
    assert got == dict(members)
    monkeypatch.undo()
    raw = bytearray(path.read_bytes())
    raw[150] = ord("7")  # a checksum digit: not a plain tar any more, the general path judges it
    path.write_bytes(bytes(raw))
    assert shards._plain_table(path, len(raw), shards.MAX_MEMBER) is None
    with pytest.raises(ShardError, match="damaged"):
        read_members(path)
