"""The market snapshot strategies read: bounded candle rings, windows, validation."""

from __future__ import annotations

import numpy as np
import pytest

from triplegain_core.marketdata.snapshot import (
    CandleBuffer,
    CandleWindow,
    MarketSnapshot,
    TradeBuffer,
    TradeWindow,
)
from triplegain_core.model.market import Candle, Side, Trade, timeframe_us

T0 = 1_700_000_000_000_000
MINUTE = 60_000_000


def _candle(i: int, symbol: str = "XRP/USDT", timeframe: str = "1m") -> Candle:
    price = 100.0 + i
    return Candle(symbol, timeframe, T0 + i * MINUTE, price, price + 1, price - 1, price + 0.5, float(i), 1)


def test_buffer_keeps_exactly_the_last_capacity_candles() -> None:
    buffer = CandleBuffer("XRP/USDT", "1m", capacity=5)
    assert buffer.window() is None
    for i in range(23):  # past several compactions of the twice-capacity backing arrays
        buffer.append(_candle(i))
        window = buffer.window()
        assert window is not None
        kept = list(range(max(0, i - 4), i + 1))
        assert list(window.open_time_us) == [T0 + k * MINUTE for k in kept]
        assert list(window.close) == [100.5 + k for k in kept]
        assert list(window.volume) == [float(k) for k in kept]
    assert len(buffer) == 5


@pytest.mark.parametrize("capacity", [2, 5, 7])
def test_candles_appended_between_two_windows_end_as_if_each_was_cut(capacity: int) -> None:
    """Appends are written to the ring when a window is cut, several at once: whatever the run
    lengths (shorter than, equal to, longer than the capacity), the windows are the last
    ``capacity`` candles, and an earlier window stays as it was."""
    buffer = CandleBuffer("XRP/USDT", "1m", capacity=capacity)
    runs = np.random.default_rng(capacity).integers(1, 3 * capacity, 40)
    appended: list[int] = []
    windows: list[tuple[CandleWindow, list[int]]] = []
    for run in runs:
        for _ in range(run):
            buffer.append(_candle(len(appended)))
            appended.append(len(appended))
        window = buffer.window()
        assert window is not None
        kept = appended[-capacity:]
        assert list(window.open_time_us) == [T0 + k * MINUTE for k in kept]
        assert list(window.close) == [100.5 + k for k in kept]
        windows.append((window, kept))
    for window, kept in windows:
        assert list(window.close) == [100.5 + k for k in kept]


def test_pending_candles_are_taken_from_a_window_of_the_same_candles_only() -> None:
    buffer, plain = CandleBuffer("XRP/USDT", "1m", capacity=4), CandleBuffer("XRP/USDT", "1m", capacity=4)
    candles = [_candle(i) for i in range(9)]
    for candle in candles[:2]:
        buffer.append(candle)
        plain.append(candle)
    assert buffer.window() is not None
    for candle in candles[2:]:
        buffer.append(candle)
        plain.append(candle)
    with pytest.raises(ValueError, match="6 rows for 7 pending candles"):
        buffer.take_pending_from(CandleWindow.from_candles(candles[3:]))
    with pytest.raises(ValueError, match="7 rows for 7 pending candles"):
        buffer.take_pending_from(CandleWindow.from_candles([_candle(i) for i in range(10, 17)]))
    buffer.take_pending_from(CandleWindow.from_candles(candles[2:]))
    ours, theirs = buffer.window(), plain.window()
    assert ours is not None and theirs is not None
    for column in ("open_time_us", "open", "high", "low", "close", "volume"):
        assert getattr(ours, column).tolist() == getattr(theirs, column).tolist()
    assert len(ours) == 4


def test_buffer_window_is_a_read_only_copy() -> None:
    buffer = CandleBuffer("XRP/USDT", "1m", capacity=3)
    buffer.extend(_candle(i) for i in range(3))
    window = buffer.window()
    assert window is not None
    with pytest.raises(ValueError):
        window.close[0] = 0.0
    buffer.extend(_candle(i) for i in range(3, 10))
    assert list(window.close) == [100.5, 101.5, 102.5]  # later appends do not reach an old window


def test_buffer_rejects_other_series_and_old_candles() -> None:
    buffer = CandleBuffer("XRP/USDT", "1m")
    buffer.append(_candle(5))
    with pytest.raises(ValueError, match="not newer"):
        buffer.append(_candle(5))
    with pytest.raises(ValueError, match="holds"):
        buffer.append(_candle(6, symbol="BTC/USDT"))
    with pytest.raises(ValueError, match="unknown timeframe"):
        CandleBuffer("XRP/USDT", "7m")


def test_window_from_candles_and_tail() -> None:
    window = CandleWindow.from_candles([_candle(i) for i in range(10)])
    assert len(window) == 10 and window.last_close_time_us == T0 + 10 * MINUTE
    tail = window.tail(3)
    assert list(tail.close) == [107.5, 108.5, 109.5] and tail.last_open_time_us == window.last_open_time_us
    assert window.tail(50) is window
    with pytest.raises(ValueError):
        CandleWindow.from_candles([_candle(0), _candle(1, symbol="BTC/USDT")])
    with pytest.raises(ValueError, match="strictly increase"):
        CandleWindow.from_candles([_candle(1), _candle(0)])


def test_snapshot_refuses_candles_from_its_future() -> None:
    window = CandleWindow.from_candles([_candle(i) for i in range(3)])
    MarketSnapshot(ts_us=window.last_close_time_us, candles={("XRP/USDT", "1m"): window})
    with pytest.raises(ValueError, match="closes after"):
        MarketSnapshot(ts_us=window.last_close_time_us - 1, candles={("XRP/USDT", "1m"): window})
    with pytest.raises(ValueError, match="filed under"):
        MarketSnapshot(ts_us=T0 + 10 * MINUTE, candles={("BTC/USDT", "1m"): window})
    with pytest.raises(ValueError, match="positive"):
        MarketSnapshot(ts_us=T0, prices={"XRP/USDT": float("nan")})


def test_price_prefers_the_latest_source() -> None:
    one = CandleWindow.from_candles([_candle(i) for i in range(3)])
    five = CandleWindow.from_candles([_candle(0, timeframe="5m")])
    snapshot = MarketSnapshot(ts_us=T0 + 5 * MINUTE, candles={("XRP/USDT", "1m"): one, ("XRP/USDT", "5m"): five})
    assert snapshot.price("XRP/USDT") == 100.5  # the 5m candle closes last
    assert MarketSnapshot(ts_us=T0, prices={"XRP/USDT": 0.5}).price("XRP/USDT") == 0.5
    assert snapshot.price("BTC/USDT") is None
    assert timeframe_us("1h") == 60 * MINUTE
    assert np.all(np.diff(one.open_time_us) == MINUTE)


def _trade(i: int, side: Side, qty: float, symbol: str = "XRP/USDT") -> Trade:
    return Trade(symbol, 1000 + i, T0 + i * 1_000_000, 0.5 + i * 0.001, qty, side)


def test_trade_window_taker_flow_over_a_time_range() -> None:
    trades = [_trade(0, Side.BUY, 5.0), _trade(1, Side.SELL, 2.0), _trade(2, Side.BUY, 1.0), _trade(3, Side.SELL, 7.0)]
    tape = TradeWindow.from_trades(trades)
    assert tape.taker_flow(T0, T0 + 3_000_000) == (6.0, 9.0, 4)
    assert tape.taker_flow(T0 + 1_000_000, T0 + 2_000_000) == (1.0, 2.0, 2)  # both ends inclusive
    assert tape.taker_flow(T0 + 4_000_000, T0 + 9_000_000) == (0.0, 0.0, 0)
    assert list(tape.trade_id) == [1000, 1001, 1002, 1003]
    with pytest.raises(ValueError, match="decrease"):
        TradeWindow.from_trades([trades[1], trades[0]])
    with pytest.raises(ValueError, match="one symbol"):
        TradeWindow.from_trades([trades[0], _trade(1, Side.BUY, 1.0, symbol="BTC/USDT")])


def test_trade_buffer_keeps_the_latest_trades() -> None:
    buffer = TradeBuffer("XRP/USDT", capacity=4)
    assert buffer.window() is None
    sides = [Side.BUY, Side.SELL]
    for i in range(19):
        buffer.append(_trade(i, sides[i % 2], float(i + 1)))
    tape = buffer.window()
    assert tape is not None and len(tape) == 4
    assert list(tape.trade_id) == [1015, 1016, 1017, 1018]
    assert list(tape.qty) == [16.0, 17.0, 18.0, 19.0] and list(tape.side) == [-1.0, 1.0, -1.0, 1.0]
    with pytest.raises(ValueError, match="older"):
        buffer.append(_trade(3, Side.BUY, 1.0))
    snapshot = MarketSnapshot(ts_us=T0 + 20_000_000, trades={"XRP/USDT": tape})
    assert snapshot.recent_trades("XRP/USDT") is tape and snapshot.recent_trades("BTC/USDT") is None
    with pytest.raises(ValueError, match="filed under"):
        MarketSnapshot(ts_us=T0, trades={"BTC/USDT": tape})


def test_fingerprint_follows_only_the_parts_asked_for() -> None:
    one = CandleWindow.from_candles([_candle(i) for i in range(3)])
    two = CandleWindow.from_candles([_candle(i) for i in range(4)])
    tape = TradeWindow.from_trades([_trade(0, Side.BUY, 1.0)])
    base = MarketSnapshot(ts_us=T0 + 10 * MINUTE, candles={("XRP/USDT", "1m"): one}, trades={"XRP/USDT": tape})
    moved = MarketSnapshot(ts_us=T0 + 11 * MINUTE, candles={("XRP/USDT", "1m"): one}, prices={"XRP/USDT": 1.0})
    candles_only = frozenset({"candles"})
    assert base.fingerprint(candles_only) == moved.fingerprint(candles_only)
    assert base.fingerprint() != moved.fingerprint()
    newer = MarketSnapshot(ts_us=T0 + 10 * MINUTE, candles={("XRP/USDT", "1m"): two})
    assert base.fingerprint(candles_only) != newer.fingerprint(candles_only)
    assert base.fingerprint(frozenset({"trades"})) != moved.fingerprint(frozenset({"trades"}))
