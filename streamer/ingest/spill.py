"""The spill buffer: a FIFO queue that holds a bounded number of items in memory and appends
the rest to a file, read back in order.

The batch writer holds in it what it could not write while a server is away, so a long
outage costs disk, never unbounded memory, and nothing is dropped. Items are pickled (they
are our own frozen dataclasses, written and read by this process only).
"""

from __future__ import annotations

import pickle
import struct
from collections import deque
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

T = TypeVar("T")

_LENGTH = struct.Struct("<Q")


class SpillBuffer(Generic[T]):
    """First in, first out: up to ``memory_items`` in memory, the rest in the file ``path``
    (created on the first spill, emptied once read back). Not thread safe."""

    def __init__(self, path: Path, memory_items: int) -> None:
        if memory_items < 1:
            raise ValueError("memory_items must be at least 1")
        self._path = path
        self._memory_items = memory_items
        self._memory: deque[T] = deque()
        self._file: BinaryIO | None = None
        self._read_at = 0  # file offset of the oldest spilled item
        self._spilled = 0

    def __len__(self) -> int:
        return len(self._memory) + self._spilled

    @property
    def spilled(self) -> int:
        """How many items are on disk now."""
        return self._spilled

    def append(self, item: T) -> None:
        """Add ``item`` after every item held."""
        if not self._spilled and len(self._memory) < self._memory_items:
            self._memory.append(item)
            return
        # Once anything is on disk, newer items go there too, so the order holds.
        file = self._open()
        file.seek(0, 2)
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        file.write(_LENGTH.pack(len(data)))
        file.write(data)
        self._spilled += 1

    def peek(self) -> T:
        """The oldest item held (IndexError when empty)."""
        if not self._memory:
            self._refill()
        return self._memory[0]

    def pop(self) -> T:
        """Remove and return the oldest item held (IndexError when empty)."""
        if not self._memory:
            self._refill()
        item = self._memory.popleft()
        if not self._memory and self._spilled:
            self._refill()
        return item

    def close(self) -> None:
        """Close and remove the file (what it held is dropped)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._path.unlink(missing_ok=True)
        self._spilled = 0
        self._read_at = 0

    def _open(self) -> BinaryIO:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("w+b")
            self._read_at = 0
        return self._file

    def _refill(self) -> None:
        """Move the oldest spilled items back into memory (up to the memory bound)."""
        if not self._spilled:
            raise IndexError("the spill buffer is empty")
        file = self._open()
        file.flush()
        file.seek(self._read_at)
        while self._spilled and len(self._memory) < self._memory_items:
            (length,) = _LENGTH.unpack(file.read(_LENGTH.size))
            self._memory.append(pickle.loads(file.read(length)))
            self._spilled -= 1
        self._read_at = file.tell()
        if not self._spilled:  # all read back: start the file afresh
            file.seek(0)
            file.truncate()
            self._read_at = 0
