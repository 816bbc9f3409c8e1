from __future__ import annotations

import os
from pathlib import Path

import torch

from launcher.runtime.train import data


def test_fraction_keeps_every_class_and_scales_each_class(tiny_data: Path) -> None:
    split = data.scan(tiny_data / "train")
    assert split.counts() == [8, 8, 8]
    half = data.stratified_subset(split, 0.5, seed=0)
    assert half.counts() == [4, 4, 4]
    tiny = data.stratified_subset(split, 0.01, seed=0)
    assert tiny.counts() == [1, 1, 1]  # never drops a whole class
    assert data.stratified_subset(split, 0.5, seed=0) == half
    assert data.stratified_subset(split, 0.5, seed=1) != half  # the seed picks which images


def test_load_image_is_a_square_uint8_center_crop(tiny_data: Path) -> None:
    img = data.load_image(data.scan(tiny_data / "val").samples[0][0], 10)
    assert img.shape == (10, 10, 3) and str(img.dtype) == "uint8"


def test_disk_cache_writes_reuses_and_rebuilds_stale_arrays(tmp_path: Path, tiny_data: Path) -> None:
    split = data.scan(tiny_data / "val")
    first = data.ImageSet(split, 12, "disk", cache_dir=tmp_path)
    first.prepare()
    assert (first.written, first.reused) == (9, 0)
    assert [p.suffix for p in tmp_path.iterdir() if p.suffix != ".json"] == [
        ".u8"
    ]  # one packed array, not a file per image
    assert first.buffer.shape == (9, 12, 12, 3)  # memory-mapped: a batch is one gather, decoded once ever
    again = data.ImageSet(split, 12, "disk", cache_dir=tmp_path)
    again.prepare()
    assert (again.written, again.reused) == (0, 9)
    plain = data.ImageSet(split, 12, False)
    assert torch.equal(again.__getitems__([0, 4])[0], plain.__getitems__([0, 4])[0])
    other_size = data.ImageSet(split, 8, "disk", cache_dir=tmp_path)  # resize settings are part of the key
    other_size.prepare()
    assert other_size.written == 9
    os.utime(split.samples[0][0], ns=(1, 10**18))  # the image changed on disk: its array is stale
    stale = data.ImageSet(split, 12, "disk", cache_dir=tmp_path)
    stale.prepare()
    assert (stale.written, stale.reused) == (1, 8)
    assert torch.equal(
        stale.__getitems__([1, 8])[0], plain.__getitems__([1, 8])[0]
    )  # the kept rows survive the rewrite


def test_ram_cache_is_one_shared_buffer_with_the_decoded_images(tiny_data: Path) -> None:
    split = data.scan(tiny_data / "train")
    ram = data.ImageSet(split, 12, "ram")
    ram.prepare(threads=2)
    assert ram.buffer.shape == (24, 12, 12, 3) and ram.buffer.is_shared()
    images, labels = ram.__getitems__([3, 20])
    assert torch.equal(images, data.ImageSet(split, 12, False).__getitems__([3, 20])[0])
    assert labels.tolist() == [0, 2]


def test_ram_check_counts_every_rank_on_the_node() -> None:
    one_rank = 1000 * 64 * 64 * 3
    assert data.ram_fits(1000, 64, local_ranks=1, available=2 * one_rank)
    assert not data.ram_fits(1000, 64, local_ranks=8, available=2 * one_rank)


def test_ram_buffer_reaches_dataloader_workers(tiny_data: Path) -> None:
    ram = data.ImageSet(data.scan(tiny_data / "val"), 12, "ram")
    ram.prepare()
    batches = data.TrainBatches(len(ram), 4, rank=0, world=1, seed=0)
    loader = data.make_loader(ram, batches, workers=1, pin=False)
    got = [(x, y) for x, y in loader]
    assert sum(len(y) for _, y in got) == 8  # 9 images, batch 4, last partial batch dropped
    order = [i for b in batches for i in b]
    assert torch.equal(got[0][0], ram.buffer[order[:4]])


def test_sampler_reshuffles_per_epoch_and_skips_done_batches() -> None:
    batches = data.TrainBatches(40, 4, rank=0, world=1, seed=0)
    batches.set_epoch(0)
    epoch0 = list(batches)
    batches.set_epoch(1)
    assert list(batches) != epoch0
    batches.set_epoch(0, skip=3)
    assert list(batches) == epoch0[3:]


def test_ddp_shards_train_by_rank_and_validation_counts_each_sample_once() -> None:
    ranks = [data.TrainBatches(40, 4, rank=r, world=2, seed=0) for r in (0, 1)]
    seen = [i for b in ranks for batch in b for i in batch]
    assert sorted(seen) == list(range(40))
    val = [list(data.ShardSampler(9, r, 2)) for r in (0, 1)]
    assert sorted(val[0] + val[1]) == list(range(9))


def test_scale_controls_the_random_resized_crop() -> None:
    images = torch.randint(0, 256, (6, 16, 16, 3), dtype=torch.uint8)
    plain = data.to_model_input(images, 16)
    assert torch.equal(data.augment(images, 16, 0.0, torch.Generator().manual_seed(0)), plain)
    cropped = data.augment(images, 16, 0.9, torch.Generator().manual_seed(0))
    assert cropped.shape == plain.shape and not torch.allclose(cropped, plain, atol=0.1)
    again = data.augment(images, 16, 0.9, torch.Generator().manual_seed(0))
    assert torch.equal(cropped, again)  # the generator alone decides: resumable


def test_crop_areas_stay_within_the_scale_range() -> None:
    # a bright centre pixel block: a crop covering >= 90% of the image always keeps some of it
    images = torch.zeros(32, 20, 20, 3, dtype=torch.uint8)
    images[:, 9:11, 9:11] = 255
    out = data.augment(images, 20, 0.1, torch.Generator().manual_seed(0))
    assert (out.amax(dim=(1, 2, 3)) > 0).all()


def test_multi_scale_sizes_span_half_to_one_and_a_half_imgsz() -> None:
    sizes = {data.multi_scale_size(32, 0.5 + g / 10) for g in range(11)}
    assert min(sizes) == 16 and max(sizes) == 48 and all(s % 8 == 0 for s in sizes)
    assert data.cache_size(32, multi_scale=True) == 48 and data.cache_size(32, multi_scale=False) == 32
