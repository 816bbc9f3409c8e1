"""ImageFolder data: scanning, stratified fractions, caches, batches, augmentation.

Design (why it is shaped like this):

- Every image is decoded ONCE into a fixed-size uint8 square (`cache_size`):
  shorter side resized to S, centre crop S x S. That fixed shape lets the RAM
  cache be one contiguous shared-memory buffer (N, S, S, 3) that DataLoader
  workers read without copying, and lets a batch be one gather. The disk
  cache is the same array in one file, memory-mapped: also one gather.
- Augmentation (random-resized-crop `scale`, multi-scale size per batch)
  runs on the whole batch on the training device as ONE `affine_grid` +
  `grid_sample`, instead of per image in Python inside workers. The random
  numbers come from a generator seeded by (seed, epoch, batch, rank), so a
  resumed run sees exactly the same augmentations as an uninterrupted one,
  whatever the number of workers.
- Training batches come from a `DistributedSampler` (reshuffled per epoch
  with `set_epoch`); validation shards the set with no padding, so every
  sample is counted exactly once across ranks.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

__all__ = [
    "IMG_EXTENSIONS",
    "Split",
    "scan",
    "stratified_subset",
    "cache_size",
    "load_image",
    "ImageSet",
    "disk_cache_dir",
    "available_memory",
    "ram_fits",
    "TrainBatches",
    "ShardSampler",
    "make_loader",
    "augment",
    "to_model_input",
    "multi_scale_size",
]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics: what torchvision's pretrained weights expect
STD = (0.229, 0.224, 0.225)
_CACHE_VERSION = "v1"
CACHE_VERSION = _CACHE_VERSION  # part of every disk-cache row key (a packed set makes its own keys)
_RAM_SHARE = 0.7  # never plan to use more than this share of available memory for the RAM cache


@dataclass(frozen=True)
class Split:
    samples: list[tuple[str, int]]
    classes: list[str]

    def counts(self) -> list[int]:
        counts = [0] * len(self.classes)
        for _, label in self.samples:
            counts[label] += 1
        return counts


def scan(folder: Path, classes: Sequence[str] | None = None) -> Split:
    """List `<folder>/<class>/*` images; classes sorted by name as in torchvision."""
    names = list(classes) if classes is not None else sorted(p.name for p in folder.iterdir() if p.is_dir())
    samples = []
    for label, name in enumerate(names):
        files = sorted((folder / name).rglob("*")) if (folder / name).is_dir() else []
        samples += [(str(f), label) for f in files if f.suffix.lower() in IMG_EXTENSIONS]
    return Split(samples, names)


def stratified_subset(split: Split, fraction: float, seed: int) -> Split:
    """Keep `fraction` of each class (at least one image per class), chosen by `seed`."""
    if fraction >= 1.0:
        return split
    import torch  # noqa: PLC0415

    by_class: dict[int, list[int]] = {}
    for i, (_, label) in enumerate(split.samples):
        by_class.setdefault(label, []).append(i)
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for label in sorted(by_class):
        ids = by_class[label]
        n = max(1, round(len(ids) * fraction))
        order = torch.randperm(len(ids), generator=gen)[:n].tolist()
        keep += [ids[j] for j in sorted(order)]
    return Split([split.samples[i] for i in sorted(keep)], split.classes)


def cache_size(imgsz: int, multi_scale: bool) -> int:
    """Side of the stored square: the largest size training will ask for."""
    return multi_scale_size(imgsz, 1.5) if multi_scale else imgsz


def multi_scale_size(imgsz: int, gain: float) -> int:
    """imgsz * gain rounded to a multiple of 8 (at least 16): friendly to strided models."""
    return max(16, int(round(imgsz * gain / 8.0)) * 8)


def load_image(path: str | bytes, size: int):  # type: ignore[no-untyped-def]
    """Decode -> RGB -> shorter side to `size` -> centre crop: (size, size, 3) uint8 (a file, or its bytes)."""
    import io  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as im:
        im.draft("RGB", (size, size))  # JPEG: let libjpeg decode at a reduced scale when it can
        im = im.convert("RGB")
        w, h = im.size
        r = size / min(w, h)
        nw, nh = max(size, round(w * r)), max(size, round(h * r))
        im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0 if r < 0.5 else None)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.array(im, dtype=np.uint8)  # a writable copy: torch.from_numpy needs one


def disk_cache_dir() -> Path:
    if os.environ.get("LAUNCHER_CACHE_DIR"):
        return Path(os.environ["LAUNCHER_CACHE_DIR"])
    return Path.home() / ".cache" / "launcher" / "images"


def _disk_key(path: str, size: int) -> str:
    st = os.stat(path)
    ident = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{size}|{_CACHE_VERSION}"
    return hashlib.sha1(ident.encode()).hexdigest()


def _read_index(index: Path, pack: Path, nbytes: int) -> list[str]:
    """The row keys of an existing pack, or [] when there is none (or it is not whole)."""
    import json  # noqa: PLC0415

    try:
        if pack.stat().st_size != nbytes:
            return []
        keys = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return keys if isinstance(keys, list) else []


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (what the kernel can give without swapping)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def ram_fits(n_images: int, size: int, local_ranks: int, available: int) -> bool:
    """Whether `local_ranks` copies of the decoded images fit: the trainer passes 1 when the node's processes
    share one copy in /dev/shm (launcher.runtime.train.loop), else the number of processes, each with its own."""
    need = n_images * size * size * 3 * local_ranks
    return need <= available * _RAM_SHARE


class ImageSet:
    """A map-style dataset of fixed-size uint8 images with an optional cache.

    `__getitems__` returns a whole batch (uint8 NHWC tensor, int64 labels), so
    the DataLoader moves one tensor per batch through shared memory.
    """

    def __init__(self, split: Split, size: int, cache: str | bool, cache_dir: Path | None = None) -> None:
        self.split, self.size, self.cache = split, size, cache
        self.cache_dir = cache_dir or disk_cache_dir()
        self.buffer = None
        self.pack: Path | None = None  # cache=disk: the memory-mapped array file
        self.written = self.reused = 0

    def __len__(self) -> int:
        return len(self.split.samples)

    def prepare(self, threads: int = 4) -> None:
        """Fill the RAM buffer or bring the disk cache up to date (decoding in threads)."""
        if self.cache == "ram":
            self._fill_ram(threads)
        elif self.cache == "disk":
            self._fill_disk(threads)

    def _fill_ram(self, threads: int) -> None:
        import torch  # noqa: PLC0415

        buffer = torch.empty((len(self), self.size, self.size, 3), dtype=torch.uint8)
        buffer.share_memory_()  # workers forked or spawned later map the same pages

        def fill(i: int) -> None:
            buffer[i] = torch.from_numpy(load_image(self.source(i), self.size))

        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(fill, range(len(self))))
        self.buffer = buffer

    def _fill_disk(self, threads: int) -> None:
        """One packed uint8 array (N, S, S, 3) per split and size, memory-mapped: a batch is one gather.

        Per-image files cost an open and a header parse per image per epoch,
        more than the decode they save for small images. The index next to the
        pack holds each row's key (path, size, mtime, side), so a changed or
        added image re-decodes only its own row.
        """
        import numpy as np  # noqa: PLC0415
        import torch  # noqa: PLC0415

        if not len(self):
            return
        keys = [self.row_key(i) for i in range(len(self))]
        name = hashlib.sha1(f"{self.pack_ident()}|{_CACHE_VERSION}".encode()).hexdigest()
        self.pack, index = self.cache_dir / f"{name}.u8", self.cache_dir / f"{name}.json"
        shape = (len(self), self.size, self.size, 3)
        old = _read_index(index, self.pack, math.prod(shape))
        missing = [i for i, k in enumerate(keys) if i >= len(old) or old[i] != k]
        if missing:
            self._write_pack(index, shape, keys, missing, threads)
        self.written, self.reused = len(missing), len(self) - len(missing)
        # copy-on-write mapping: writable for torch, never written back; the page cache holds the pixels
        self.buffer = torch.from_numpy(np.memmap(self.pack, np.uint8, "c", shape=shape))

    def _write_pack(self, index: Path, shape: tuple[int, ...], keys: list[str], rows: list[int], threads: int) -> None:
        import json  # noqa: PLC0415
        import shutil  # noqa: PLC0415

        import numpy as np  # noqa: PLC0415

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
        os.close(fd)
        reuse = len(rows) < shape[0]
        if reuse:
            shutil.copyfile(self.pack, tmp)  # rows still valid are kept, not decoded again
        array = np.memmap(tmp, np.uint8, "r+" if reuse else "w+", shape=shape)

        def fill(i: int) -> None:
            array[i] = load_image(self.source(i), self.size)  # noqa: F821 - `del array` below, after use

        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(fill, rows))
        array.flush()
        del array
        fd, tmp_index = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(keys, f)
        # pack first, index second: a crash in between leaves an index whose matching rows are still right
        os.replace(tmp, self.pack)  # atomic: a concurrent reader maps either the old pack or the new one
        os.replace(tmp_index, index)

    def source(self, i: int) -> str | bytes:
        """What `load_image` decodes for sample i: its file here (a packed set: its bytes from the shard)."""
        return self.split.samples[i][0]

    def row_key(self, i: int) -> str:
        """The disk cache's key of row i: the image's identity (path, size, mtime) and the side."""
        return _disk_key(self.split.samples[i][0], self.size)

    def pack_ident(self) -> str:
        """What names the disk cache's array file of this set."""
        return "|".join(os.path.abspath(p) for p, _ in self.split.samples) + f"|{self.size}"

    def image(self, i: int):  # type: ignore[no-untyped-def]
        import torch  # noqa: PLC0415

        if self.buffer is not None:
            return self.buffer[i]
        return torch.from_numpy(load_image(self.source(i), self.size))

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        return self.image(i), self.split.samples[i][1]

    def __getitems__(self, indices: Sequence[int]):  # type: ignore[no-untyped-def]
        import torch  # noqa: PLC0415

        labels = torch.tensor([self.split.samples[i][1] for i in indices], dtype=torch.int64)
        if self.buffer is not None:
            return self.buffer[torch.as_tensor(indices)], labels  # one gather from the shared buffer
        return torch.stack([self.image(i) for i in indices]), labels


def _passthrough(batch):  # type: ignore[no-untyped-def]
    return batch


class TrainBatches:
    """Batches of a `DistributedSampler` (reshuffled by `set_epoch`), able to skip
    the first batches of an epoch so a run stopped mid-epoch resumes exactly."""

    def __init__(self, n: int, batch: int, rank: int, world: int, seed: int) -> None:
        from torch.utils.data import DistributedSampler  # noqa: PLC0415

        self.sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.batch = batch
        self.drop_last = self.sampler.num_samples > batch  # a last batch of 1 breaks BatchNorm
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.sampler.set_epoch(epoch)
        self.skip = skip

    def __len__(self) -> int:
        n = self.sampler.num_samples
        return n // self.batch if self.drop_last else math.ceil(n / self.batch)

    def __iter__(self) -> Iterator[list[int]]:
        ids = list(self.sampler)
        for b in range(self.skip, len(self)):
            yield ids[b * self.batch : (b + 1) * self.batch]


class ShardSampler:
    """rank, rank+world, ...: each sample on exactly one rank, no padding."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.ids = list(range(rank, n, world))

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids)


def make_loader(dataset: ImageSet, batch_sampler, workers: int, pin: bool, worker_init_fn=None):  # type: ignore[no-untyped-def]
    from torch.utils.data import DataLoader  # noqa: PLC0415

    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=workers,
        worker_init_fn=worker_init_fn if workers > 0 else None,
        collate_fn=_passthrough,
        pin_memory=pin,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def _normalize(x):  # type: ignore[no-untyped-def]
    import torch  # noqa: PLC0415

    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1) * 255.0
    return (x - mean) / std


def to_model_input(images, size: int):  # type: ignore[no-untyped-def]
    """uint8 NHWC on the device -> normalised float NCHW at `size` (validation)."""
    import torch.nn.functional as F  # noqa: PLC0415

    x = images.permute(0, 3, 1, 2).float()  # NHWC memory viewed as NCHW = channels_last, no copy
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return _normalize(x)


def augment(images, size: int, scale: float, generator):  # type: ignore[no-untyped-def]
    """Random-resized-crop of each image to `size` in one batched grid_sample.

    Each crop covers a random area share in [1 - scale, 1] of the image with an
    aspect ratio in [3/4, 4/3] (torchvision's RandomResizedCrop convention),
    at a random position. `scale == 0` is no crop at all.
    """
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    n = images.shape[0]
    if scale <= 0:
        return to_model_input(images, size)
    area = 1.0 - scale * torch.rand(n, generator=generator)
    log_ratio = (torch.rand(n, generator=generator) * 2 - 1) * math.log(4 / 3)
    w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    x = images.permute(0, 3, 1, 2).float()
    grid = F.affine_grid(theta.to(x.device), [n, 3, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _normalize(x.contiguous(memory_format=torch.channels_last))  # the model's layout: no conversion in conv1
