"""``BatchCursor``: an iterable of batches read epoch after epoch, with a position that a
checkpoint stores and a resumed run restores.

At each epoch start the cursor calls the source's ``set_epoch(epoch)`` (``VolumeStream``,
``ImageStream``, a ``DistributedSampler``-backed DataLoader's sampler) and iterates it; a
restored cursor re-enters its epoch and drops the batches already consumed. For sources
whose order depends only on the epoch (the qgfast streams draw every crop and augmentation
from (seed, epoch, slot); a DataLoader with a seeded DistributedSampler likewise) a resumed
run therefore sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def _set_epoch(source: Any, epoch: int) -> None:
    for target in (source, getattr(source, "sampler", None), getattr(source, "dataset", None)):
        set_epoch = getattr(target, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
            return


class BatchCursor:
    """Reads ``source`` (an iterable of batches) as consecutive epochs.

    ``next_batch()`` returns (batch, epoch_ended_before_it): the flag is True when this batch
    opened a new epoch after the previous one ran out. ``state()`` / ``restore()`` carry
    (epoch, position in the epoch).
    """

    def __init__(self, source: Iterable[Any], name: str) -> None:
        if not isinstance(source, Iterable):
            raise TypeError(f"the {name} data must be an iterable of batches")
        self.source = source
        self.name = name
        self.epoch = 0
        self.position = 0  # batches of this epoch already handed out
        self._it: Iterator[Any] | None = None

    def _open(self, skip: int) -> None:
        _set_epoch(self.source, self.epoch)
        self._it = iter(self.source)
        for i in range(skip):
            try:
                next(self._it)
            except StopIteration:
                raise RuntimeError(
                    f"cannot resume the {self.name} data at batch {skip} of epoch {self.epoch}: "
                    f"it now holds {i} batches (the data or its settings changed)"
                ) from None

    def next_batch(self) -> tuple[Any, bool]:
        if self._it is None:
            self._open(self.position)
        assert self._it is not None
        try:
            batch = next(self._it)
        except StopIteration:
            if self.position == 0:
                raise RuntimeError(f"the {self.name} data yielded no batch") from None
            self.epoch += 1
            self.position = 0
            self._open(0)
            try:
                batch = next(self._it)
            except StopIteration:
                raise RuntimeError(
                    f"the {self.name} data yielded no batch in epoch {self.epoch}"
                ) from None
            self.position = 1
            return batch, True
        self.position += 1
        return batch, False

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def restore(self, state: dict[str, int]) -> None:
        self.epoch, self.position, self._it = int(state["epoch"]), int(state["position"]), None

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]
