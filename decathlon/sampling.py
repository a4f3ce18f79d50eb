"""Training patches from the preprocessed cache: a torch Dataset and a deterministic loader.

Patches come from :class:`~decathlon.patches.PatchSampler` (foreground oversampling, padding)
over memory-mapped cached cases. Every patch is a pure function of ``(seed, epoch, index)``, so
a loader gives the same batches whatever the number of workers and however they are scheduled.
An optional ``transform`` (data augmentation, e.g. :class:`nasmed.train.augment.Augmenter`) runs
on each patch in the workers, with a seed drawn from the same ``(seed, epoch, index)`` generator.
"""

from __future__ import annotations

import math
import mmap
import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from decathlon.cache import check_cached_case, npy_header
from decathlon.errors import DatasetError
from decathlon.patches import PatchSampler, is_forced_foreground

__all__ = [
    "BatchShards",
    "PatchDataset",
    "PatchLoader",
    "PatchSampler",
    "PatchTransform",
    "is_forced_foreground",
    "make_loader",
]


#: Augments one patch: ``(image (C, *patch) float32, label (1, *patch) integer, seed)`` ->
#: ``(image, label)`` of the same shapes (label values integral, any dtype); a pure function of its
#: arguments (and picklable, to run in loader workers).
PatchTransform = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def _map_npy(path: Path) -> tuple[np.ndarray, mmap.mmap]:
    """Memory-map a ``.npy`` file read-only; returns the array and its map (for madvise)."""
    with open(path, "rb") as f:
        shape, fortran, dtype = npy_header(f)
        offset = f.tell()
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    order: Literal["F", "C"] = "F" if fortran else "C"
    return np.ndarray(shape, dtype=dtype, buffer=mm, offset=offset, order=order), mm


class PatchDataset(Dataset[dict[str, Any]]):
    """Patches from the preprocessed cache; item ``i`` depends only on ``(seed, epoch, i)``.

    The cached arrays are memory-mapped; after each item or batch the pages read are handed
    back to the page cache (``madvise(MADV_DONTNEED)``), so a worker's memory stays at a few
    patches however much of the dataset it has read.

    Args:
        cache_dir: the cache folder (``WORK_DIR/cache``).
        cases: case names to draw from.
        patch_size: the patch.
        samples_per_epoch: the dataset's length.
        seed: base seed.
        foreground_fraction: share of patches centred on foreground (exact per run of samples).
        class_balanced: see :class:`PatchSampler`.
        transform: applied to every patch (see :data:`PatchTransform`); ``None``: none.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        cases: Sequence[str],
        patch_size: Sequence[int],
        *,
        samples_per_epoch: int = 250,
        seed: int = 0,
        foreground_fraction: float = 1 / 3,
        class_balanced: bool = True,
        transform: PatchTransform | None = None,
    ) -> None:
        if not cases:
            raise DatasetError(f"{cache_dir}: no cases to draw patches from")
        self.cache_dir = Path(cache_dir)
        self.names = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.seed = int(seed)
        self.foreground_fraction = float(foreground_fraction)
        self.class_balanced = class_balanced
        self.transform = transform
        self.epoch = 0
        self._sampler: PatchSampler | None = None
        self._maps: list[list[mmap.mmap]] = []
        for name in self.names:  # fail early, in the main process, if a case is missing
            props = self.cache_dir / f"{name}.json"
            if not props.is_file() or not (self.cache_dir / f"{name}.npy").is_file():
                raise DatasetError(
                    f"{props}: case {name!r} is not in the cache; run `nasmed preprocess` first"
                )
            problem = check_cached_case(self.cache_dir, name)
            if problem is not None:
                raise DatasetError(f"{problem}; run `nasmed preprocess` again to rebuild it")
        with open(self.cache_dir / f"{self.names[0]}.npy", "rb") as f:
            self.channels = int(npy_header(f)[0][0])
        seg = self.cache_dir / f"{self.names[0]}_seg.npy"
        self.compact_label = torch.int8
        if seg.exists():
            with open(seg, "rb") as f:
                self.compact_label = torch.from_numpy(np.zeros(0, npy_header(f)[2])).dtype

    def set_epoch(self, epoch: int) -> None:
        """Draw the patches of ``epoch`` (call before iterating a loader for that epoch)."""
        self.epoch = int(epoch)

    @property
    def sampler(self) -> PatchSampler:
        """The patch sampler over memory-mapped cases, opened on first use in each process."""
        if self._sampler is None:
            from decathlon.preprocess import load_class_locations

            cases: list[tuple[np.ndarray, np.ndarray | None]] = []
            self._maps = []
            for name in self.names:
                image, image_map = _map_npy(self.cache_dir / f"{name}.npy")
                seg_path = self.cache_dir / f"{name}_seg.npy"
                seg, seg_map = _map_npy(seg_path) if seg_path.exists() else (None, None)
                cases.append((image, seg))
                self._maps.append([m for m in (image_map, seg_map) if m is not None])
            self._sampler = PatchSampler(
                cases,
                self.patch_size,
                foreground_fraction=self.foreground_fraction,
                class_balanced=self.class_balanced,
                class_locations=[load_class_locations(self.cache_dir, n) for n in self.names],
            )
        return self._sampler

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_sampler"] = None  # each worker opens its own memory maps
        state["_maps"] = []
        return state

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _release(self, cases: set[int]) -> None:
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        for index in cases:
            for m in self._maps[index]:
                m.madvise(mmap.MADV_DONTNEED)

    def batch(self, indices: Sequence[int], *, long_labels: bool = True) -> dict[str, Any]:
        """Items ``indices`` stacked: ``{"image": (B, C, *patch), "label": (B, 1, *patch),
        "case": [names]}``.

        In a loader worker the tensors are allocated in shared memory, so handing them to the
        main process copies nothing. ``long_labels=False`` keeps the cache's compact integer
        type (int8 or int16) for the label.
        """
        n = len(indices)
        image = torch.empty((n, self.channels, *self.patch_size), dtype=torch.float32)
        ltype = torch.int64 if long_labels else self.compact_label
        label = torch.empty((n, 1, *self.patch_size), dtype=ltype)
        if get_worker_info() is not None:
            image.share_memory_()
            label.share_memory_()
        names, touched = [], set()
        sampler = self.sampler
        for k, i in enumerate(indices):
            rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            force = is_forced_foreground(int(i), self.foreground_fraction)
            index, corner = sampler.draw(rng, force_foreground=force)
            sampler.extract(index, corner, out=(image[k].numpy(), label[k].numpy()))
            if self.transform is not None:
                img, lab = self.transform(image[k], label[k], int(rng.integers(2**63)))
                if img is not image[k]:
                    image[k].copy_(img)
                if lab is not label[k]:
                    label[k].copy_(lab.round().to(ltype))
            names.append(self.names[index])
            touched.add(index)
        self._release(touched)
        return {"image": image, "label": label, "case": names}

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.batch([i])
        return {"image": item["image"][0], "label": item["label"][0], "case": item["case"][0]}


class BatchShards(Dataset[dict[str, Any]]):
    """Batch ``b`` of a :class:`PatchDataset` (items ``b * batch_size`` on), or one shard of it.

    With ``world`` > 1 (data-parallel training) every rank takes its contiguous
    ``batch_size // world`` items of the same global batch, so the ranks together see exactly the
    patches one process would.

    Args:
        patches: the epoch's patches.
        batch_size: patches per (global) batch.
        rank: this shard's index.
        world: number of shards; must divide ``batch_size``.
    """

    def __init__(
        self, patches: PatchDataset, batch_size: int, rank: int = 0, world: int = 1
    ) -> None:
        if world < 1 or not 0 <= rank < world or batch_size % world:
            raise ValueError(
                f"batch {batch_size} cannot be split into {world} shards (rank {rank})"
            )
        self.patches = patches
        self.batch_size = batch_size
        self.local = batch_size // world
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        """See :meth:`PatchDataset.set_epoch`."""
        self.patches.set_epoch(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.patches) / self.batch_size)

    def __getitem__(self, b: int) -> dict[str, Any]:
        start = b * self.batch_size + self.rank * self.local
        stop = min(start + self.local, len(self.patches))
        return self.patches.batch(range(start, stop), long_labels=False)


class PatchLoader(DataLoader[dict[str, Any]]):
    """The loader :func:`make_loader` returns: workers hand over labels in the cache's compact
    integer type (a quarter or an eighth of the bytes); they become int64 here."""

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        for batch in super().__iter__():
            label = batch["label"].long()
            batch["label"] = label.pin_memory() if self.pin_memory else label
            yield batch


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


def make_loader(
    cache_dir: str | os.PathLike[str],
    cases: Sequence[str],
    patch_size: Sequence[int],
    *,
    batch_size: int = 2,
    workers: int = 2,
    samples_per_epoch: int = 250,
    seed: int = 0,
    foreground_fraction: float = 1 / 3,
    class_balanced: bool = True,
    pin_memory: bool = False,
    rank: int = 0,
    world: int = 1,
    transform: PatchTransform | None = None,
) -> PatchLoader:
    """A DataLoader of ``{"image", "label", "case"}`` batches from the cache.

    Each worker builds whole batches (no collation copy) from item indices, so the batches are
    the same, in order, for any ``workers``: batch ``b`` holds
    ``PatchDataset.__getitem__(i)`` for ``i`` in ``b * batch_size ...``. Call
    ``loader.dataset.set_epoch(e)`` before each epoch to draw new patches. With ``world`` > 1,
    ``batch_size`` is the global batch and this loader yields rank ``rank``'s share of it.
    ``transform`` augments each patch in the workers (see :class:`PatchDataset`).
    """
    patches = PatchDataset(
        cache_dir,
        cases,
        patch_size,
        samples_per_epoch=samples_per_epoch,
        seed=seed,
        foreground_fraction=foreground_fraction,
        class_balanced=class_balanced,
        transform=transform,
    )
    return PatchLoader(
        BatchShards(patches, batch_size, rank, world),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory,
        persistent_workers=False,
    )
