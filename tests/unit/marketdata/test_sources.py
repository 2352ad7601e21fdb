"""Replay sources: the simulator's promises, trade files, trades laid inside candles, and every
mistake a source file can hold answered in one line naming where it is."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triplegain_core.errors import UserMistake
from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.sources import (
    MarketSimulator,
    SourceFileError,
    merge_by_time,
    trades_from_candles,
    trades_from_file,
    trades_from_source_file,
)
from triplegain_core.model.market import TRADED_SYMBOLS, US_PER_MINUTE, US_PER_SECOND, Side

START = 1_767_571_200_000_000  # 2026-01-05 00:00 UTC
HOURS = 6


@pytest.fixture(scope="module")
def simulated() -> list:
    return list(MarketSimulator(seed=7, start_us=START, duration_s=HOURS * 3600))


def test_same_seed_same_trades_other_seed_other_trades(simulated: list) -> None:
    assert list(MarketSimulator(7, START, HOURS * 3600)) == simulated
    assert list(MarketSimulator(8, START, HOURS * 3600))[:50] != simulated[:50]


def test_a_subset_of_symbols_is_the_same_market(simulated: list) -> None:
    btc_only = list(MarketSimulator(7, START, HOURS * 3600, symbols=("BTC/USDT",)))
    assert btc_only == [t for t in simulated if t.symbol == "BTC/USDT"]


def test_time_order_ids_and_levels(simulated: list) -> None:
    assert all(a.ts_us <= b.ts_us for a, b in itertools.pairwise(simulated))
    assert all(START <= t.ts_us < START + HOURS * 3600 * US_PER_SECOND for t in simulated)
    by_symbol = defaultdict(list)
    for trade in simulated:
        by_symbol[trade.symbol].append(trade)
    assert set(by_symbol) == set(TRADED_SYMBOLS)
    for trades in by_symbol.values():
        assert [t.trade_id for t in trades] == list(range(1, len(trades) + 1))
        assert all(t.price > 0 and t.qty > 0 for t in trades)
        assert {t.side for t in trades} == {Side.BUY, Side.SELL}
    assert 30_000 < by_symbol["BTC/USDT"][0].price < 90_000
    assert 0.3 < by_symbol["XRP/USDT"][0].price < 0.8


def test_every_minute_of_every_symbol_has_a_candle(simulated: list) -> None:
    candles = build_candles(simulated)
    minutes = HOURS * 60
    assert len(candles) == minutes * len(TRADED_SYMBOLS)
    for symbol in TRADED_SYMBOLS:
        starts = sorted(c.open_time_us for c in candles if c.symbol == symbol)
        assert starts == [START + i * US_PER_MINUTE for i in range(minutes)]
        counts = [c.trade_count for c in candles if c.symbol == symbol]
        assert min(counts) >= 1 and 5 <= sum(counts) / len(counts) <= 20


def test_cross_rate_is_exact_within_each_second(simulated: list) -> None:
    """XRP/BTC prints XRP/USDT / BTC/USDT of the same second, to the last bit."""
    seconds: dict[int, dict[str, float]] = defaultdict(dict)
    for trade in simulated:
        seconds[trade.ts_us // US_PER_SECOND][trade.symbol] = trade.price
    triples = [prices for prices in seconds.values() if len(prices) == 3]
    assert len(triples) > 20
    for prices in triples:
        assert prices["XRP/BTC"] == prices["XRP/USDT"] / prices["BTC/USDT"]


def test_btc_and_xrp_returns_are_positively_correlated(simulated: list) -> None:
    closes = {symbol: [c.close for c in build_candles(simulated) if c.symbol == symbol]
              for symbol in ("BTC/USDT", "XRP/USDT")}
    returns = [np.diff(np.log(closes[s])) for s in ("BTC/USDT", "XRP/USDT")]
    correlation = np.corrcoef(*returns)[0, 1]
    assert 0.3 < correlation < 0.85


def test_regimes_move_the_market(simulated: list) -> None:
    btc = [t.price for t in simulated if t.symbol == "BTC/USDT"]
    assert max(btc) / min(btc) > 1.005  # the price does wander over six hours
    assert all(math.isfinite(p) for p in btc)


def test_simulator_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="minute"):
        MarketSimulator(1, START + 1, 60)
    with pytest.raises(ValueError, match="knows"):
        MarketSimulator(1, START, 60, symbols=("ETH/USDT",))


def test_partial_last_minute_stays_inside_the_window() -> None:
    trades = list(MarketSimulator(3, START, 90))
    assert all(START <= t.ts_us < START + 90 * US_PER_SECOND for t in trades)
    assert {t.ts_us // US_PER_MINUTE for t in trades} == {START // US_PER_MINUTE,
                                                           START // US_PER_MINUTE + 1}


def test_merge_by_time_keeps_time_order() -> None:
    a = list(MarketSimulator(1, START, 600, symbols=("BTC/USDT",)))
    b = list(MarketSimulator(2, START, 600, symbols=("XRP/USDT",)))
    merged = list(merge_by_time(a, b))
    assert len(merged) == len(a) + len(b)
    assert all(x.ts_us <= y.ts_us for x, y in itertools.pairwise(merged))


def test_kraken_csv_trades_get_ids_and_tick_rule_sides(shared_data: Path) -> None:
    trades = list(trades_from_file(shared_data / "kraken_bch-eur_trades.csv", "XRP/USDT"))
    raw = pd.read_csv(shared_data / "kraken_bch-eur_trades.csv")
    assert len(trades) == len(raw) == 148
    assert [t.trade_id for t in trades] == list(range(1, 149))
    assert trades[0].ts_us == int(raw["ts_s"].iloc[0]) * US_PER_SECOND
    for previous, trade in itertools.pairwise(trades):
        if trade.price > previous.price:
            assert trade.side is Side.BUY
        elif trade.price < previous.price:
            assert trade.side is Side.SELL


def test_binance_parquet_trades_keep_ids_and_sides(shared_data: Path) -> None:
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/ETH"))
    assert len(trades) == 12_477
    assert trades[0].trade_id == 13_519_807 and trades[0].side is Side.SELL
    assert trades[0].ts_us == 1_570_752_011_620_000


@pytest.mark.parametrize("per_candle", [4, 7])
def test_candle_trades_rebuild_the_candles(shared_data: Path, per_candle: int) -> None:
    path = shared_data / "binance_xrp-eth_1m.parquet"
    trades = list(trades_from_candles(path, "XRP/ETH", trades_per_candle=per_candle))
    source = pd.read_parquet(path)
    assert len(trades) == per_candle * len(source)
    assert all(a.ts_us < b.ts_us for a, b in itertools.pairwise(trades))
    candles = build_candles(trades)
    # The file leaves quiet minutes out; rebuilt, they are flat at the close before them.
    assert all((c.open, c.high, c.low, c.volume) == (before.close, before.close, before.close, 0)
               for before, c in itertools.pairwise(candles) if c.quiet)
    rebuilt = [(c.open_time_us, c.open, c.high, c.low, c.close, c.volume, c.trade_count)
               for c in candles if not c.quiet]
    expected = list(zip(
        source["ts"].dt.as_unit("us").astype("int64").tolist(), source["open"].tolist(),
        source["high"].tolist(), source["low"].tolist(), source["close"].tolist(),
        source["volume"].tolist(), [per_candle] * len(source), strict=True,
    ))
    assert rebuilt == expected


def test_candle_path_visits_low_first_when_closing_up(tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    pd.DataFrame({"ts": ["2026-01-05T00:00:00Z", "2026-01-05T00:01:00Z"],
                  "open": [10.0, 12.0], "high": [13.0, 12.5], "low": [9.0, 8.0],
                  "close": [12.0, 9.0], "volume": [1.0, 0.3]}).to_csv(path, index=False)
    trades = list(trades_from_candles(path, "XRP/USDT"))
    assert [t.price for t in trades] == [10.0, 9.0, 13.0, 12.0, 12.0, 12.5, 8.0, 9.0]
    assert all(START + i * US_PER_MINUTE < t.ts_us < START + (i + 1) * US_PER_MINUTE
               for i, chunk in enumerate((trades[:4], trades[4:])) for t in chunk)
    assert sum(t.qty for t in trades[4:]) == 0.3


TRADES_CSV = "ts_s,price,amount\n"
CANDLES_CSV = "ts,open,high,low,close,volume\n"
Content = str | bytes | Callable[[Path], None] | None


def _parquet(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_parquet(path)


def _trades(**columns: list) -> pd.DataFrame:
    frame = {"ts_ms": [1_570_752_011_620, 1_570_752_011_700, 1_570_752_012_000],
             "trade_id": ["11", "12", "13"], "side": ["sell", "buy", "buy"],
             "price": [0.0014, 0.0015, 0.0016], "amount": [23.0, 54.0, 1.0]}
    return pd.DataFrame(frame | columns)


def _candles(**columns: list) -> pd.DataFrame:
    frame = {"ts": pd.to_datetime(["2026-01-05T00:00Z", "2026-01-05T00:01Z", "2026-01-05T00:02Z"]),
             "open": [10.0, 11.0, 12.0], "high": [11.0, 12.5, 13.0], "low": [9.5, 10.5, 11.5],
             "close": [11.0, 12.0, 12.5], "volume": [1.0, 2.0, 3.0]}
    return pd.DataFrame(frame | columns)


def _directory(path: Path) -> None:
    path.mkdir()


def _truncated_parquet(path: Path) -> None:
    _trades().to_parquet(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@dataclass(frozen=True)
class Mistake:
    """A bad source file, and the one line that must answer it."""

    name: str
    file: str
    content: Content
    message: str
    rows_read: int
    position: str | None = None
    column: str | None = None

    def write(self, folder: Path) -> Path:
        path = folder / self.file
        if callable(self.content):
            self.content(path)
        elif isinstance(self.content, bytes):
            path.write_bytes(self.content)
        elif isinstance(self.content, str):
            path.write_text(self.content)
        return path


MISTAKES = [
    Mistake("missing file", "missing.parquet", None,
            "missing.parquet: no such file; give a trades or candles file (.parquet or .csv) (0 rows read)", 0),
    Mistake("a directory", "data.csv", _directory,
            "data.csv: is a directory; give a trades or candles file (.parquet or .csv) (0 rows read)", 0),
    Mistake("unknown extension", "trades.txt", TRADES_CSV + "1,2,3\n",
            "trades.txt: unknown file type '.txt'; give a .parquet or .csv file (0 rows read)", 0),
    Mistake("empty file", "trades.csv", "", "trades.csv: empty file, 0 bytes (0 rows read)", 0),
    Mistake("only blank lines", "trades.csv", "\n  \n",
            "trades.csv: holds no header line (only blank lines) (0 rows read)", 0),
    Mistake("header only", "trades.csv", TRADES_CSV,
            "trades.csv: only a header (ts_s, price, amount), no rows (0 rows read)", 0),
    Mistake("missing trades column", "trades.csv", "ts_s,price\n1,2\n",
            "trades.csv: missing column amount; found ts_s, price; "
            "a trades file has ts_ms or ts_s, price, amount (0 rows read)", 0),
    Mistake("missing time column", "trades.csv", "ts,price,amount\n1,2,3\n",
            "trades.csv: missing column ts_ms or ts_s; found ts, price, amount; "
            "a trades file has ts_ms or ts_s, price, amount (0 rows read)", 0),
    Mistake("missing candles columns", "candles.csv", "ts,open,high,low\n2026-01-05T00:00Z,1,2,1\n",
            "candles.csv: missing columns close, volume; found ts, open, high, low; "
            "a candles file has ts, open, high, low, close, volume (0 rows read)", 0),
    Mistake("no known column", "prices.csv", "when,value\n1,2\n",
            "prices.csv: neither a trades file (ts_ms, trade_id, side, price, amount or ts_s, price, amount) "
            "nor a candles file (ts, open, high, low, close, volume); found when, value (0 rows read)", 0),
    Mistake("not a number", "trades.csv", TRADES_CSV + "1,2,3\n2,2,3\n1,abc,2\n",
            "trades.csv line 4, column price: 'abc' is not a number (2 rows read)", 2, "line 4", "price"),
    Mistake("empty value", "trades.csv", TRADES_CSV + "1,2,3\n2,,3\n",
            "trades.csv line 3, column price: empty value (1 row read)", 1, "line 3", "price"),
    Mistake("NaN", "trades.csv", TRADES_CSV + "1,2,3\n2,nan,3\n",
            "trades.csv line 3, column price: nan is not a finite number (1 row read)", 1, "line 3", "price"),
    Mistake("infinite", "trades.csv", TRADES_CSV + "1,2,inf\n",
            "trades.csv line 2, column amount: inf is not a finite number (0 rows read)", 0, "line 2", "amount"),
    Mistake("zero price", "trades.csv", TRADES_CSV + "1,2,3\n2,0,3\n",
            "trades.csv line 3, column price: 0 is not a positive price (1 row read)", 1, "line 3", "price"),
    Mistake("negative price", "trades.csv", TRADES_CSV + "1,-2.5,3\n",
            "trades.csv line 2, column price: -2.5 is not a positive price (0 rows read)", 0, "line 2", "price"),
    Mistake("negative amount", "trades.csv", TRADES_CSV + "1,2,3\n2,2,3\n3,2,-0.5\n",
            "trades.csv line 4, column amount: -0.5 is a negative amount (2 rows read)", 2, "line 4", "amount"),
    Mistake("time going backwards", "trades.csv",
            TRADES_CSV + "1672531436,2,3\n1672531471,2,3\n1672531400,2,3\n",
            "trades.csv line 4, column ts_s: 1672531400 is before 1672531471 on line 3: "
            "time goes backwards; sort the file by time (2 rows read)", 2, "line 4", "ts_s"),
    Mistake("time in the wrong unit", "trades.parquet", _parquet(_trades(ts_ms=[1_570_752_011_620_000_000] * 3)),
            "trades.parquet row 0, column ts_ms: 1570752011620000000 is not a time from 1970 to 9999 "
            "in epoch milliseconds (0 rows read)", 0, "row 0", "ts_ms"),
    Mistake("a line longer than the header", "trades.csv", TRADES_CSV + "1,2,3\n2,2,3\n3,2,3,4\n",
            "trades.csv line 4: 4 fields where the header names 3 (2 rows read)", 2, "line 4"),
    Mistake("a first row longer than the header", "trades.csv", TRADES_CSV + "1,2,3,4\n2,2,3,4\n",
            "trades.csv line 2: 4 fields where the header names 3 (0 rows read)", 0, "line 2"),
    Mistake("not UTF-8", "trades.csv", TRADES_CSV.encode() + b"1,2,3\n2,\xe9,3\n",
            "trades.csv line 3: not UTF-8 text (byte 0xe9); save the file as UTF-8 (1 row read)", 1, "line 3"),
    Mistake("corrupted parquet", "trades.parquet", b"PAR1 this is not parquet",
            "trades.parquet: not a readable parquet file (Parquet magic bytes not found in footer) (0 rows read)", 0),
    Mistake("truncated parquet", "trades.parquet", _truncated_parquet,
            "trades.parquet: not a readable parquet file (Parquet magic bytes not found in footer) (0 rows read)", 0),
    Mistake("parquet negative price", "trades.parquet", _parquet(_trades(price=[0.0014, 0.0015, -0.0016])),
            "trades.parquet row 2, column price: -0.0016 is not a positive price (2 rows read)", 2, "row 2", "price"),
    Mistake("parquet NaN price", "trades.parquet", _parquet(_trades(price=[0.0014, math.nan, 0.0016])),
            "trades.parquet row 1, column price: nan is not a finite number (1 row read)", 1, "row 1", "price"),
    Mistake("parquet missing amount", "trades.parquet",
            _parquet(_trades(amount=[1.0, None, 2.0]).astype({"amount": "Float64"})),
            "trades.parquet row 1, column amount: empty value (1 row read)", 1, "row 1", "amount"),
    Mistake("parquet unknown side", "trades.parquet", _parquet(_trades(side=["sell", "BUY", "buy"])),
            "trades.parquet row 1, column side: 'BUY' is not a side (buy or sell) (1 row read)", 1, "row 1", "side"),
    Mistake("parquet bad trade id", "trades.parquet", _parquet(_trades(trade_id=["11", "x12", "13"])),
            "trades.parquet row 1, column trade_id: 'x12' is not a whole trade id (1 row read)",
            1, "row 1", "trade_id"),
    Mistake("parquet time going backwards", "trades.parquet",
            _parquet(_trades(ts_ms=[1_570_752_011_620, 1_570_752_011_000, 1_570_752_012_000])),
            "trades.parquet row 1, column ts_ms: 1570752011000 is before 1570752011620 on row 0: "
            "time goes backwards; sort the file by time (1 row read)", 1, "row 1", "ts_ms"),
    Mistake("high below low", "candles.parquet", _parquet(_candles(high=[11.0, 10.0, 13.0])),
            "candles.parquet row 1, column high: high 10.0 is below low 10.5 (1 row read)", 1, "row 1", "high"),
    Mistake("open outside the range", "candles.parquet", _parquet(_candles(open=[10.0, 11.0, 14.0])),
            "candles.parquet row 2, column open: open 14.0 is outside [low 11.5, high 13.0] (2 rows read)",
            2, "row 2", "open"),
    Mistake("close outside the range", "candles.csv", CANDLES_CSV + "2026-01-05T00:00Z,10,11,9.5,11.5,1\n",
            "candles.csv line 2, column close: close 11.5 is outside [low 9.5, high 11] (0 rows read)",
            0, "line 2", "close"),
    Mistake("negative volume", "candles.parquet", _parquet(_candles(volume=[1.0, -2.0, 3.0])),
            "candles.parquet row 1, column volume: -2.0 is a negative volume (1 row read)", 1, "row 1", "volume"),
    Mistake("zero candle price", "candles.csv", CANDLES_CSV + "2026-01-05T00:00Z,0,11,0,10,1\n",
            "candles.csv line 2, column open: 0 is not a positive price (0 rows read)", 0, "line 2", "open"),
    Mistake("candle time not a time", "candles.csv",
            CANDLES_CSV + "2026-01-05T00:00Z,10,11,9,10,1\nyesterday,10,11,9,10,1\n",
            "candles.csv line 3, column ts: 'yesterday' is not a time (1 row read)", 1, "line 3", "ts"),
    Mistake("candle time repeated", "candles.parquet", _parquet(_candles(
                ts=pd.to_datetime(["2026-01-05T00:00Z", "2026-01-05T00:01Z", "2026-01-05T00:01Z"]))),
            "candles.parquet row 2, column ts: 2026-01-05 00:01:00+00:00 is not after 2026-01-05 00:01:00+00:00 "
            "on row 1: candle times must increase; sort the file by time and drop repeated candles (2 rows read)",
            2, "row 2", "ts"),
    Mistake("no volume at all", "candles.parquet", _parquet(_candles(volume=[0.0, 0.0, 0.0])),
            "candles.parquet: every candle has zero volume: no trade to replay (3 rows read)", 3),
    Mistake("blank lines count as lines", "trades.csv", TRADES_CSV + "1,2,3\n\n2,abc,3\n",
            "trades.csv line 4, column price: 'abc' is not a number (1 row read)", 1, "line 4", "price"),
    Mistake("the first bad row wins", "trades.csv", TRADES_CSV + "1,2,3\n2,2,-1\n3,abc,3\n",
            "trades.csv line 3, column amount: -1 is a negative amount (1 row read)", 1, "line 3", "amount"),
    Mistake("in a row, the first bad column wins", "trades.csv", TRADES_CSV + "1,2,3\n2,-2,-1\n",
            "trades.csv line 3, column price: -2 is not a positive price (1 row read)", 1, "line 3", "price"),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_each_mistake_is_one_line_naming_where_it_is(
    mistake: Mistake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mistake.write(Path())
    with pytest.raises(SourceFileError) as raised:
        trades_from_source_file(mistake.file, "XRP/USDT")
    error = raised.value
    message = str(error)
    assert isinstance(error, UserMistake)
    assert message == mistake.message
    assert "\n" not in message and message.startswith(mistake.file)
    assert (error.rows_read, error.position, error.column) == (mistake.rows_read, mistake.position, mistake.column)
    rows = f"({mistake.rows_read} row{'' if mistake.rows_read == 1 else 's'} read)"
    assert message.endswith(rows)
    if mistake.position:
        assert f"{mistake.file} {mistake.position}" in message
    if mistake.column:
        assert f"column {mistake.column}:" in message


def test_an_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as root, who reads any file: the reader is made to meet the refusal instead."""
    path = tmp_path / "trades.csv"
    path.write_text(TRADES_CSV + "1,2,3\n")

    def refuse(*args: object, **kwargs: object) -> pd.DataFrame:
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(pd, "read_csv", refuse)
    with pytest.raises(SourceFileError, match=r"^.*trades\.csv: cannot be read: permission denied \(0 rows read\)$"):
        trades_from_source_file(path, "XRP/USDT")


def test_the_whole_file_is_checked_before_the_first_trade(tmp_path: Path) -> None:
    """A bad last row refuses the file on the call, not half-way through the replay."""
    path = tmp_path / "trades.csv"
    path.write_text(TRADES_CSV + "".join(f"{1_672_531_436 + i},2,3\n" for i in range(1000)) + "1672532436,2,-3\n")
    with pytest.raises(SourceFileError, match=r"line 1002, column amount: .*\(1000 rows read\)$"):
        trades_from_file(path, "XRP/USDT")


def test_each_reader_names_what_its_kind_of_file_lacks(tmp_path: Path) -> None:
    candles, trades = tmp_path / "candles.parquet", tmp_path / "trades.parquet"
    _candles().to_parquet(candles)
    _trades().to_parquet(trades)
    with pytest.raises(SourceFileError, match="missing columns ts_ms or ts_s, price, amount; found ts, open"):
        trades_from_file(candles, "XRP/USDT")
    with pytest.raises(SourceFileError, match="missing columns ts, open, high, low, close, volume; found ts_ms"):
        trades_from_candles(trades, "XRP/USDT")


def test_a_checked_file_gives_the_same_trades_from_either_entry(tmp_path: Path) -> None:
    trades, candles = tmp_path / "trades.parquet", tmp_path / "candles.csv"
    _trades().to_parquet(trades)
    _candles().to_csv(candles, index=False)
    assert list(trades_from_source_file(trades, "XRP/USDT")) == list(trades_from_file(trades, "XRP/USDT"))
    assert list(trades_from_source_file(candles, "XRP/USDT")) == list(trades_from_candles(candles, "XRP/USDT"))
    assert [t.trade_id for t in trades_from_file(trades, "XRP/USDT")] == [11, 12, 13]
