"""The spill buffer keeps order across memory and disk, and bounds what it holds in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.ingest.spill import SpillBuffer
from triplegain_core.model.market import Side, Trade


def _trade(n: int) -> Trade:
    return Trade("BTC/USD", n, 1_700_000_000_000_000 + n, 100.0 + n, 0.5, Side.BUY, "market")


def test_items_come_back_in_order_across_memory_and_disk(tmp_path: Path) -> None:
    path = tmp_path / "spill" / "held.bin"
    buffer: SpillBuffer[Trade] = SpillBuffer(path, memory_items=3)
    for n in range(10):
        buffer.append(_trade(n))
    assert len(buffer) == 10
    assert buffer.spilled == 7
    assert path.exists()
    out = [buffer.pop() for _ in range(5)]
    for n in range(10, 14):  # appended while part is still on disk: after it
        buffer.append(_trade(n))
    while buffer:
        assert buffer.peek() == buffer.peek()
        out.append(buffer.pop())
    assert [t.trade_id for t in out] == list(range(14))
    assert buffer.spilled == 0
    assert path.stat().st_size == 0  # read back: the file starts afresh


def test_memory_never_holds_more_than_the_bound(tmp_path: Path) -> None:
    buffer: SpillBuffer[int] = SpillBuffer(tmp_path / "held.bin", memory_items=2)
    for n in range(100):
        buffer.append(n)
        assert len(buffer) - buffer.spilled <= 2
    for n in range(100):
        assert buffer.pop() == n
        assert len(buffer) - buffer.spilled <= 2


def test_close_removes_the_file_and_empty_pop_raises(tmp_path: Path) -> None:
    path = tmp_path / "held.bin"
    buffer: SpillBuffer[int] = SpillBuffer(path, memory_items=1)
    buffer.append(1)
    buffer.append(2)
    buffer.close()
    assert not path.exists()
    assert buffer.pop() == 1
    with pytest.raises(IndexError):
        buffer.pop()
    with pytest.raises(ValueError, match="memory_items"):
        SpillBuffer(path, memory_items=0)
