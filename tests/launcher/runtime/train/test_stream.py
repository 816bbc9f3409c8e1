"""A packed dataset streamed into training (launcher.runtime.train.stream): order, ranks, resume, fraction, cache."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from launcher.runtime.train import stream
from launcher.runtime.train.dist import Dist
from launcher.runtime.train.loop import SIGTERM_EXIT, Trainer
from launcher.staging.pack import pack
from launcher.storage.dataset import StagingProgress
from launcher.storage.shards import ShardError, read_index
from tests.launcher.runtime.train.conftest import fit_on_cpu, make_imagefolder, tiny_config
from tests.launcher.storage.conftest import StoreKind, moto_endpoint, s3_kind  # noqa: F401 - fixtures


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("packed")
    make_imagefolder(root / "src", classes=3, train=8, val=3)
    pack(str(root / "src"), str(root / "out"), shard_size=3000, log=quiet)
    return root / "out"


def split_of(folder: Path, fraction: float = 1.0) -> stream.PackedSplit:
    return stream.PackedSplit(read_index(stream.open_packed(str(folder)).store), "train", fraction)


def in_store(packed: Path, kind: StoreKind):  # type: ignore[no-untyped-def]
    """A copy of the packed folder in the store of `kind`."""
    store = kind.store()
    for path in sorted(packed.rglob("*")):
        if path.is_file():
            store.put(path.relative_to(packed).as_posix(), path)
    return store


def test_the_order_is_a_pure_function_of_seed_epoch_and_world(packed: Path) -> None:
    split = split_of(packed)
    assert sorted(stream.epoch_order(split, 0, 0, 1, 0)) == list(range(len(split)))  # every sample once
    assert stream.epoch_order(split, 0, 0, 1, 0) == stream.epoch_order(split_of(packed), 0, 0, 1, 0)
    assert stream.epoch_order(split, 0, 0, 1, 0) != stream.epoch_order(split, 0, 1, 1, 0)
    assert stream.epoch_order(split, 0, 0, 1, 0) != stream.epoch_order(split, 1, 0, 1, 0)


@pytest.mark.parametrize("world", [2, 3, 5])
def test_ranks_never_read_the_same_sample(packed: Path, world: int) -> None:
    split = split_of(packed)
    for epoch in range(3):
        ranks = [stream.epoch_order(split, 7, epoch, world, r) for r in range(world)]
        everything = [i for ids in ranks for i in ids]
        assert len(everything) == len(set(everything))  # no sample on two ranks
        assert len({len(ids) for ids in ranks}) == 1  # the same number of steps on every rank
        assert len(split) - len(everything) < world  # only the remainder waits for another epoch
        batches = [list(stream.StreamBatches(split, 2, r, world, 7, None)) for r in range(world)]
        read = [i for b in batches for batch in b for i in batch]
        assert len(read) == len(set(read))


def test_across_an_interruption_every_sample_of_the_epoch_is_read_once(packed: Path) -> None:
    split = split_of(packed)
    first = stream.StreamBatches(split, 4, 0, 1, 3, None)
    first.set_epoch(2)
    done = []
    for b, batch in enumerate(first):
        done += batch
        if b == 2:
            break  # stopped after 3 batches
    resumed = stream.StreamBatches(split, 4, 0, 1, 3, None)
    resumed.set_epoch(2, skip=3)
    rest = [i for batch in resumed for i in batch]
    assert Counter(done + rest) == Counter(range(len(split)))


class Recording(Trainer):
    """The trainer, recording which samples each epoch reads, and stopping (as SIGTERM does) after `stop_at` steps."""

    def __init__(self, *args, stop_at: int | None = None, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.stop_at, self.seen = stop_at, []

    def _loaders(self) -> None:
        read = self.train_set.__getitems__
        self.train_set.__getitems__ = lambda ids: (self.seen.extend((self.epoch, i) for i in ids), read(ids))[1]
        super()._loaders()

    def train_step(self, x, y):  # type: ignore[no-untyped-def]
        if self.stop_at is not None and self.global_step + 1 >= self.stop_at:
            self.stop_requested = True
        return super().train_step(x, y)


def test_a_trainer_stopped_mid_epoch_resumes_at_the_next_unread_sample(packed: Path, tmp_path: Path) -> None:
    cfg = tiny_config(packed, epochs=2)
    device = Dist(device=torch.device("cpu"))
    first = Recording(cfg, tmp_path / "run", device, out=io.StringIO(), stop_at=8)  # 6 steps an epoch: stops in epoch 2
    assert first.fit() == SIGTERM_EXIT
    second = Recording(cfg, tmp_path / "run", device, out=io.StringIO())
    assert second.fit() == 0
    n = 24
    epoch2 = Counter(i for e, i in first.seen + second.seen if e == 1)
    assert epoch2 == Counter(range(n))  # every sample of the interrupted epoch exactly once
    assert not [i for e, i in second.seen if e == 0]  # the finished epoch was not read again
    assert Counter(i for e, i in first.seen if e == 0) == Counter(range(n))


def test_a_fraction_downloads_only_the_shards_it_needs_once(
    packed: Path,
    s3_kind: StoreKind,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    store = in_store(packed, s3_kind)
    gets: list[str] = []
    store.client.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: gets.append(params["Key"])
    )
    opened = stream.open_packed(store.uri, store=store)
    gets.clear()
    split = stream.PackedSplit(opened.index, "train", 0.25)
    cache = stream.ShardCache(store, opened.index, tmp_path / "cache", limit=1 << 30)
    dataset = stream.PackedSet(split, 16, False, cache)
    batches = stream.StreamBatches(split, 2, 0, 1, 0, cache)
    for ids in batches:
        images, labels = dataset.__getitems__(ids)
        assert images.shape == (len(ids), 16, 16, 3)
    cache.close()
    fetched = sorted({key.rsplit("/", 1)[-1] for key in gets})
    total = len(opened.index.splits["train"])
    assert fetched == sorted(s.name for s in split.shards) and len(fetched) < total / 2
    assert len(gets) == len(fetched)  # each shard in one GET, once
    assert sorted(Counter(label for _s, _j, label in split.entries).values()) == [2, 2, 2]  # stratified: 8 a class


def test_the_cache_stays_within_its_limit_and_refuses_a_damaged_shard(
    packed: Path,
    s3_kind: StoreKind,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    store = in_store(packed, s3_kind)
    opened = stream.open_packed(store.uri, store=store)
    split = stream.PackedSplit(opened.index, "train")
    biggest = max(s.bytes for s in split.shards)
    cache = stream.ShardCache(store, opened.index, tmp_path / "cache", limit=2 * biggest)
    dataset = stream.PackedSet(split, 16, False, cache)
    for ids in stream.StreamBatches(split, 4, 0, 1, 0, cache):
        dataset.__getitems__(ids)
        assert sum(p.stat().st_size for p in (tmp_path / "cache").glob("*.tar")) <= 2 * biggest
    cache.close()
    victim = split.shards[0]
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\0" * victim.bytes)
    store.put(victim.name, bad)
    (tmp_path / "cache" / victim.name).unlink(missing_ok=True)
    with pytest.raises(ShardError, match=f"{victim.name} is damaged"):
        stream.PackedSet(split, 16, False, cache).source(next(i for i, e in enumerate(split.entries) if e[0] == 0))


def test_the_entrypoint_streams_a_packed_uri_and_unpacks_one_for_the_ultralytics_engine(
    s3_kind: StoreKind,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from launcher.runtime import datasets

    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    src = datasets.write_shapes(tmp_path / "shapes", train=6, val=2, size=16)
    store = s3_kind.store()
    pack(str(src), store.uri, shard_size=6000, dest_store=store, log=quiet)
    environ = {"LAUNCHER_DATA_DIR": str(tmp_path / "data")}
    written: list[dict] = []
    progress = StagingProgress(lambda body: written.append(json.loads(body)), every=0.0)  # every shard recorded
    streamed = datasets.stage(["train", f"data={store.uri}"], environ, progress=progress)
    assert streamed == ("train", f"data={store.uri}") and not written  # streamed: nothing staged
    staged = datasets.stage(["train", "engine=ultralytics", f"data={store.uri}"], environ, progress=progress)
    shards = read_index(store).shards()
    assert [(r["phase"], r["shards"], r["shards_total"], r["bytes"]) for r in written] == [
        ("unpacking", 0, len(shards), 0),
        *(("unpacking", n, len(shards), sum(s.bytes for s in shards[:n])) for n in range(1, len(shards) + 1)),
        ("staged", len(shards), len(shards), sum(s.bytes for s in shards)),
    ] and len(shards) > 1  # fmt: skip
    local = Path(staged[-1].removeprefix("data="))
    originals = {
        p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file() and p.name != ".complete"
    }
    copied = {
        p.relative_to(local).as_posix(): p.read_bytes()
        for p in local.rglob("*")
        if p.is_file() and p.name != ".complete"
    }
    assert copied == originals  # images/, labels/ and data.yaml, byte for byte
    assert datasets.stage(["train", "engine=ultralytics", f"data={store.uri}"], environ) == staged  # reused


def test_validation_spans_cover_every_sample_once_and_prefetch_their_shards(packed: Path, tmp_path: Path) -> None:
    opened = stream.open_packed(str(packed))
    val = stream.PackedSplit(opened.index, "val")
    spans = [list(stream.SpanSampler(len(val), r, 2)) for r in range(2)]
    assert sorted(spans[0] + spans[1]) == list(range(len(val))) and not set(spans[0]) & set(spans[1])

    class Wants:
        def __init__(self) -> None:
            self.asked: list[list[str]] = []

        def ahead(self) -> int:
            return 2

        def want(self, names: list[str]) -> None:
            self.asked.append(names)

    wants = Wants()
    assert list(stream.SpanSampler(len(val), 0, 1, val, wants)) == list(range(len(val)))  # type: ignore[arg-type]
    assert [names[0] for names in wants.asked] == [s.name for s in val.shards]  # each shard asked for as it starts


def test_the_stream_reader_records_the_node_s_data_progress(
    packed: Path,
    s3_kind: StoreKind,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:

    store = in_store(packed, s3_kind)
    opened = stream.open_packed(store.uri, store=store)
    split = stream.PackedSplit(opened.index, "train")
    cache = stream.ShardCache(store, opened.index, tmp_path / "cache", limit=1 << 30)
    clock = [0.0]
    record = stream.progress_file(tmp_path / "run")
    cache.progress = stream.DataProgress(record, cache, [s.name for s in split.shards], store.uri, every=5.0,
                                         clock=lambda: clock[0], wall=lambda: 1000.0)  # fmt: skip
    total = sum(s.bytes for s in split.shards)
    dataset = stream.PackedSet(split, 16, False, cache)
    batches = iter(stream.StreamBatches(split, 2, 0, 1, 0, cache))
    first = next(batches)  # asks for the first shards: the record says none is here yet
    assert json.loads(record.read_text()) == {"phase": "streaming", "uri": store.uri, "shards": 0,
                                              "shards_total": len(split.shards), "bytes": 0, "bytes_total": total,
                                              "time": 1000.0}  # fmt: skip
    dataset.__getitems__(first)  # its shard is fetched now
    written = record.stat().st_mtime_ns
    next(batches)
    assert record.stat().st_mtime_ns == written  # within `every` seconds: not written again
    clock[0] = 5.0
    dataset.__getitems__(next(batches))
    now = json.loads(record.read_text())
    assert 1 <= now["shards"] <= len(split.shards) and now["bytes"] >= min(s.bytes for s in split.shards)
    for ids in batches:
        dataset.__getitems__(ids)
    cache.close()  # the last record: every shard the run reads
    assert json.loads(record.read_text())["shards"] == len(split.shards)
    assert json.loads(record.read_text())["bytes"] == total


def test_the_syncer_copies_the_data_progress_to_the_run_folder(tmp_path: Path) -> None:
    from launcher.storage.local import LocalStore
    from launcher.storage.sync import Syncer

    save = tmp_path / "save"
    save.mkdir()
    store = LocalStore(str(tmp_path / "store"))
    syncer = Syncer("unused", "r", save, store=store, log=quiet)
    assert not syncer.mirror_data_progress()  # no record yet
    stream.progress_file(save).write_text('{"shards": 1}')
    assert syncer.mirror_data_progress() and store.get_bytes("data-progress.json") == b'{"shards": 1}'
    assert not syncer.mirror_data_progress()  # unchanged: not sent again
    (save / "last.pt").write_bytes(b"weights")
    manifest = syncer.pusher.push()
    assert manifest is not None and set(manifest.files) == {"last.pt"}  # the record is in no checkpoint


def test_a_trainer_streaming_a_packed_uri_leaves_its_data_progress_beside_its_checkpoints(
    packed: Path,
    s3_kind: StoreKind,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    store = in_store(packed, s3_kind)
    fit_on_cpu(tiny_config(store.uri, epochs=1), tmp_path / "run")
    index = read_index(store)
    record = json.loads(stream.progress_file(tmp_path / "run").read_text())
    assert (record["shards"], record["shards_total"], record["bytes"], record["uri"]) == (
        len(index.shards()),
        len(index.shards()),
        index.bytes(),
        store.uri,
    )


def test_each_shard_is_hashed_once_as_it_downloads_and_the_same_wanted_list_costs_nothing(
    packed: Path,
    s3_kind: StoreKind,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from launcher.storage import shards

    store = in_store(packed, s3_kind)
    rehashed: list[Path] = []
    monkeypatch.setattr(shards, "_sha256", lambda path: rehashed.append(path) or "0" * 64)
    looked: list[Path] = []
    has = stream._has
    monkeypatch.setattr(stream, "_has", lambda path, size: looked.append(path) or has(path, size))
    opened = stream.open_packed(store.uri, store=store)
    split = stream.PackedSplit(opened.index, "train")
    cache = stream.ShardCache(store, opened.index, tmp_path / "cache", limit=1 << 30)
    assert cache.threads == stream.prefetch_threads()
    names = [s.name for s in split.shards[:2]]
    cache.want(names)
    assert [cache.path(n).name for n in names] == names  # each from the background or here, whichever came first
    assert cache.fetched == 2
    assert rehashed == []  # verified against the index from the hash taken while downloading, not a second read
    cache.close()  # the background fetches end (each found its shard here): only this thread's checks count below
    looked.clear()
    cache.want(names)  # what every batch of a shard asks again: no stat, no touch, no download
    assert looked == []
    cache.want(names[1:])
    assert len(looked) == 1
    dataset = stream.PackedSet(split, 16, False, cache)
    for ids in stream.StreamBatches(split, 4, 0, 1, 0, cache):
        assert dataset.__getitems__(ids)[0].shape == (len(ids), 16, 16, 3)
    cache.close()
    assert rehashed == [] and cache.fetched == len(split.shards)


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (4, 2), (8, 4), (64, 4)])
def test_shards_are_prefetched_by_one_thread_per_two_cores(cpus: int, threads: int) -> None:
    assert stream.prefetch_threads(cpus) == threads
