"""Replayable trade streams: real trade files, trades laid inside real candles, a simulator.

Every source yields :class:`Trade` objects in time order (per symbol, and across symbols for
the simulator), ready for the replay exchange or for :func:`build_candles`. A file is read and
checked whole before its first trade is handed out: a bad file is a :class:`SourceFileError`
naming the file, the line (csv) or row (parquet) and the column of its first bad value.
"""

from __future__ import annotations

import bisect
import csv
import heapq
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from triplegain_core.errors import UserMistake
from triplegain_core.model.market import (
    TRADED_SYMBOLS,
    US_PER_MINUTE,
    US_PER_SECOND,
    Side,
    Trade,
)

SOURCE_SUFFIXES = (".parquet", ".csv")
TRADES_COLUMNS = ("ts_ms", "trade_id", "side", "price", "amount")
CSV_TRADES_COLUMNS = ("ts_s", "price", "amount")
CANDLES_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
# Epoch times from 1970 up to the end of year 9999, the span a datetime can hold.
_LAST_EPOCH_S = 253_402_300_800
_TIME_UNITS = {"ts_ms": 1_000, "ts_s": 1}
_FIELDS_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_PARQUET_SOURCE = re.compile(r"^Could not open Parquet input source '.*?': ")


class SourceFileError(UserMistake):
    """A replay or backtest source file that cannot be replayed, and where its first fault lies.

    The message is one line: the file, the line (csv, the header being line 1) or row (parquet,
    from 0) and the column of the first bad value, what is wrong, and how many rows were read
    fine before it, e.g. ``trades.csv line 3, column price: 'abc' is not a number (1 row read)``.
    """

    def __init__(self, path: Path, problem: str, rows_read: int = 0,
                 position: str | None = None, column: str | None = None) -> None:
        where = ", ".join(part for part in (position, column and f"column {column}") if part)
        rows = f"{rows_read} row{'' if rows_read == 1 else 's'} read"
        super().__init__(f"{path}{' ' + where if where else ''}: {problem} ({rows})")
        self.path = path
        self.problem = problem
        self.rows_read = rows_read
        self.position = position
        self.column = column


@dataclass(frozen=True, slots=True)
class _SourceTable:
    """A source file read whole, and how to point at one of its values in a message."""

    path: Path
    frame: pd.DataFrame

    @property
    def is_csv(self) -> bool:
        return self.path.suffix == ".csv"

    def columns(self) -> list[str]:
        return [str(name) for name in self.frame.columns]

    def position(self, row: int) -> str:
        """Where data row ``row`` (from 0) is: its line in a csv file, its row in a parquet one."""
        if not self.is_csv:
            return f"row {row}"
        lines = _csv_data_lines(self.path)
        # A quoted value spanning lines would shift the count: past the end, assume one line a row.
        return f"line {lines[row] if row < len(lines) else row + 2}"

    def error(self, row: int, column: str | None, problem: str) -> SourceFileError:
        """The error for a fault at data row ``row`` (from 0): all rows before it were fine."""
        return SourceFileError(self.path, problem, row, self.position(row), column)

    def is_not(self, row: int, column: str, what: str) -> str:
        """``<value> is not <what>``, or ``empty value`` when the file holds none there."""
        text = self.shown(row, column)
        return f"{text} is not {what}" if text else "empty value"

    def shown(self, row: int, column: str) -> str:
        """The value as the file holds it: numbers and times bare, texts quoted, '' when empty."""
        if self.is_csv:
            # Read again as text (only on the way to an error): the text the user typed.
            raw = pd.read_csv(self.path, dtype=str, keep_default_na=False, usecols=[column])
            text = str(raw[column].iloc[row])
            return text if text == "" or _is_number_text(text) else repr(text)
        value = self.frame[column].iloc[row]
        if value is None or value is pd.NA or value is pd.NaT:
            return ""
        if isinstance(value, str):
            return repr(value)
        return str(value.item() if isinstance(value, np.generic) else value)


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_data_lines(path: Path) -> list[int]:
    """The line number of each data row of a csv file (blank lines skipped, as pandas does)."""
    with path.open("rb") as handle:
        filled = [number for number, line in enumerate(handle, start=1) if line.strip()]
    return filled[1:]


def _read_source_table(path: Path) -> _SourceTable:
    """The whole file as a table with at least one row, or the SourceFileError saying why not."""
    if not path.exists():
        raise SourceFileError(path, "no such file; give a trades or candles file (.parquet or .csv)")
    if path.is_dir():
        raise SourceFileError(path, "is a directory; give a trades or candles file (.parquet or .csv)")
    if path.suffix not in SOURCE_SUFFIXES:
        raise SourceFileError(path, f"unknown file type {path.suffix or '(no extension)'!r}; "
                                    "give a .parquet or .csv file")
    try:
        if path.stat().st_size == 0:
            raise SourceFileError(path, "empty file, 0 bytes")
        frame = _read_csv(path) if path.suffix == ".csv" else _read_parquet(path)
    except PermissionError:
        raise SourceFileError(path, "cannot be read: permission denied") from None
    except OSError as exc:
        raise SourceFileError(path, f"cannot be read: {exc.strerror or exc}") from None
    if frame.empty:
        raise SourceFileError(path, f"only a header ({', '.join(map(str, frame.columns))}), no rows")
    return _SourceTable(path, frame)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise SourceFileError(path, "holds no header line (only blank lines)") from None
    except pd.errors.ParserError as exc:
        fields = _FIELDS_ERROR.search(str(exc))
        if fields is None:
            raise SourceFileError(path, f"not a readable csv file ({_first_sentence(exc)})") from None
        expected, line, seen = map(int, fields.groups())
        rows_read = bisect.bisect_left(_csv_data_lines(path), line)
        raise SourceFileError(path, f"{seen} fields where the header names {expected}",
                              rows_read, f"line {line}") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    longer = _longer_first_row(path)
    if longer is not None:
        # pandas silently takes a first row longer than the header as index plus values.
        expected, line, seen = longer
        raise SourceFileError(path, f"{seen} fields where the header names {expected}", 0, f"line {line}")
    return frame


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> SourceFileError:
    """The error naming the line of the file's first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as whole:
        # pandas decodes in chunks, so its offsets are the chunk's: decode the whole file.
        line = data.count(b"\n", 0, whole.start) + 1
        rows_read = bisect.bisect_left(_csv_data_lines(path), line)
        return SourceFileError(path, f"not UTF-8 text (byte {data[whole.start]:#04x}); save the file as UTF-8",
                               rows_read, f"line {line}")
    return SourceFileError(path, f"not UTF-8 text ({exc.reason}); save the file as UTF-8")


def _longer_first_row(path: Path) -> tuple[int, int, int] | None:
    """(header fields, line, fields) when the first data row has more fields than the header."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        filled = (fields for fields in reader if any(field.strip() for field in fields))
        try:
            header, first = next(filled, []), next(filled, [])
        except csv.Error:  # a row Python's reader refuses, which pandas read: not pandas' index trap
            return None
        if len(first) > len(header):
            return len(header), reader.line_num, len(first)
    return None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except PermissionError:
        raise
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid or its IO error: not parquet, or corrupted
        raise SourceFileError(path, f"not a readable parquet file ({_first_sentence(exc)})") from None


def _first_sentence(exc: Exception) -> str:
    """The gist of a reader's error, without the file name the message already gives."""
    text = _PARQUET_SOURCE.sub("", str(exc).strip())
    gist = text.splitlines()[0].split(". ")[0].rstrip(".") if text else ""
    return gist or type(exc).__name__


class _Faults:
    """The first fault of a table: the lowest row, then the first check listed."""

    def __init__(self, table: _SourceTable) -> None:
        self.table = table
        self._first: tuple[int, int, str | None, Callable[[int], str]] | None = None
        self._checks = 0

    def add(self, mask: np.ndarray, column: str | None, problem: Callable[[int], str]) -> None:
        """Note the first row where ``mask`` holds; ``problem(row)`` says what is wrong there."""
        order = self._checks
        self._checks += 1
        if not mask.any():
            return
        row = int(mask.argmax())
        if self._first is None or (row, order) < self._first[:2]:
            self._first = (row, order, column, problem)

    def raise_first(self) -> None:
        """Raise the SourceFileError of the first fault, if there is one."""
        if self._first is not None:
            row, _, column, problem = self._first
            raise self.table.error(row, column, problem(row))


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column as floats, NaN where a value is empty or not a number."""
    values = frame[column]
    if not pd.api.types.is_numeric_dtype(values):
        values = pd.to_numeric(values, errors="coerce")
    numbers: np.ndarray = values.to_numpy(dtype="float64", na_value=np.nan)
    return numbers


def _check_numbers(faults: _Faults, frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column's values, a fault noted at the first one that is not a finite number."""
    values = _numbers(frame, column)
    with np.errstate(invalid="ignore"):
        faults.add(~np.isfinite(values), column, lambda row: _not_a_number(faults.table, row, column))
    return values


def _not_a_number(table: _SourceTable, row: int, column: str) -> str:
    text = table.shown(row, column)
    if text == "":
        return "empty value"
    if _is_number_text(text):
        return f"{text} is not a finite number"
    return f"{text} is not a number"


def _check_positive(faults: _Faults, values: np.ndarray, column: str) -> None:
    faults.add(values <= 0, column, lambda row: faults.table.is_not(row, column, "a positive price"))


def _check_not_negative(faults: _Faults, values: np.ndarray, column: str) -> None:
    faults.add(values < 0, column, lambda row: f"{faults.table.shown(row, column)} is a negative {column}")


def _check_time_order(faults: _Faults, times: np.ndarray, column: str, strictly: bool,
                      known: np.ndarray | None = None) -> None:
    """A fault where a row's time goes back before the previous row's (or repeats it, strictly).

    Rows not ``known`` (a missing time, a fault of its own) are not compared with their neighbours.
    """
    mask = np.zeros(len(times), dtype=bool)
    with np.errstate(invalid="ignore"):
        mask[1:] = times[1:] <= times[:-1] if strictly else times[1:] < times[:-1]
    if known is not None:
        mask[1:] &= known[1:] & known[:-1]

    def problem(row: int) -> str:
        table = faults.table
        then = f"{table.shown(row - 1, column)} on {table.position(row - 1)}"
        if strictly:
            return (f"{table.shown(row, column)} is not after {then}: candle times must increase; "
                    "sort the file by time and drop repeated candles")
        return f"{table.shown(row, column)} is before {then}: time goes backwards; sort the file by time"
    faults.add(mask, column, problem)


def _missing_columns(table: _SourceTable, kind: str, expected: Sequence[str],
                     missing: Sequence[str]) -> SourceFileError:
    return SourceFileError(table.path, f"missing column{'s' if len(missing) > 1 else ''} "
                                       f"{', '.join(missing)}; found {', '.join(table.columns())}; "
                                       f"a {kind} file has {', '.join(expected)}")


@dataclass(frozen=True, slots=True)
class _TradeColumns:
    """A checked trades file, column by column, in file (and time) order."""

    ts_us: list[int]
    trade_ids: Sequence[int]
    prices: list[float]
    amounts: list[float]
    sides: list[Side]


def _check_trades(table: _SourceTable) -> _TradeColumns:
    frame = table.frame
    time_column = next((name for name in _TIME_UNITS if name in frame), None)
    missing = [name for name in ("price", "amount") if name not in frame]
    if time_column is None or missing:
        raise _missing_columns(table, "trades", ("ts_ms or ts_s", "price", "amount"),
                               ["ts_ms or ts_s"] * (time_column is None) + missing)
    faults = _Faults(table)
    checked: dict[str, np.ndarray] = {}
    unit = "milliseconds" if time_column == "ts_ms" else "seconds"
    for column in table.columns():
        if column == time_column:
            times = checked[column] = _check_numbers(faults, frame, column)
            faults.add((times < 0) | (times >= _LAST_EPOCH_S * _TIME_UNITS[column]), column,
                       lambda row: table.is_not(row, time_column, f"a time from 1970 to 9999 in epoch {unit}"))
        elif column in ("price", "amount"):
            values = checked[column] = _check_numbers(faults, frame, column)
            (_check_positive if column == "price" else _check_not_negative)(faults, values, column)
        elif column == "trade_id":
            numbers = _numbers(frame, column)
            with np.errstate(invalid="ignore"):
                faults.add(~np.isfinite(numbers) | (numbers != np.floor(numbers)), column,
                           lambda row: table.is_not(row, "trade_id", "a whole trade id"))
        elif column == "side":
            faults.add(~frame[column].isin([side.value for side in Side]).to_numpy(), column,
                       lambda row: table.is_not(row, "side", "a side (buy or sell)"))
    _check_time_order(faults, checked[time_column], time_column, strictly=False)
    faults.raise_first()
    if time_column == "ts_ms":
        ts_us = (_checked_series(frame, "ts_ms").astype("int64") * 1000).tolist()
    else:
        ts_us = (_checked_series(frame, "ts_s").astype("float64") * US_PER_SECOND).round().astype("int64").tolist()
    prices = frame["price"].astype("float64").tolist()
    ids = (_checked_series(frame, "trade_id").astype("int64").tolist() if "trade_id" in frame
           else range(1, len(frame) + 1))
    sides = [Side(s) for s in frame["side"]] if "side" in frame else _tick_rule_sides(prices)
    return _TradeColumns(ts_us, ids, prices, frame["amount"].astype("float64").tolist(), sides)


def _checked_series(frame: pd.DataFrame, column: str) -> pd.Series:
    """A checked column as numbers (a text column of numbers, such as parquet trade ids, parsed)."""
    values = frame[column]
    return values if pd.api.types.is_numeric_dtype(values) else pd.to_numeric(values)


@dataclass(frozen=True, slots=True)
class _CandleColumns:
    """A checked candles file, column by column, in time order."""

    opens_us: list[int]
    opens: list[float]
    highs: list[float]
    lows: list[float]
    closes: list[float]
    volumes: list[float]


def _check_candles(table: _SourceTable) -> _CandleColumns:
    frame = table.frame
    missing = [name for name in CANDLES_COLUMNS if name not in frame]
    if missing:
        raise _missing_columns(table, "candles", CANDLES_COLUMNS, missing)
    faults = _Faults(table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when it cannot guess a date format
        times = pd.to_datetime(frame["ts"], utc=True, errors="coerce")
    values: dict[str, np.ndarray] = {}
    for column in table.columns():
        if column == "ts":
            faults.add(times.isna().to_numpy(), column,
                       lambda row: table.is_not(row, "ts", "a time"))
        elif column in CANDLES_COLUMNS:
            values[column] = _check_numbers(faults, frame, column)
            if column == "volume":
                _check_not_negative(faults, values[column], column)
            else:
                _check_positive(faults, values[column], column)
    opens, highs, lows, closes = (values[name] for name in ("open", "high", "low", "close"))

    def shown(row: int, column: str) -> str:
        return f"{column} {table.shown(row, column)}"

    def outside(column: str) -> Callable[[int], str]:
        return lambda row: f"{shown(row, column)} is outside [{shown(row, 'low')}, {shown(row, 'high')}]"
    faults.add(highs < lows, "high", lambda row: f"{shown(row, 'high')} is below {shown(row, 'low')}")
    faults.add((opens < lows) | (opens > highs), "open", outside("open"))
    faults.add((closes < lows) | (closes > highs), "close", outside("close"))
    stamps = times.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").view("int64")
    _check_time_order(faults, stamps, "ts", strictly=True, known=times.notna().to_numpy())
    faults.raise_first()
    if not (values["volume"] > 0).any():
        raise SourceFileError(table.path, "every candle has zero volume: no trade to replay", len(frame))
    prices = (_checked_series(frame, name).tolist() for name in ("open", "high", "low", "close", "volume"))
    return _CandleColumns(times.dt.as_unit("us").astype("int64").tolist(), *prices)


def _tick_rule_sides(prices: Sequence[float]) -> list[Side]:
    """Synthesized taker sides: an uptick is a buy, a downtick a sell, no change repeats."""
    sides, side, previous = [], Side.BUY, None
    for price in prices:
        if previous is not None and price != previous:
            side = Side.BUY if price > previous else Side.SELL
        sides.append(side)
        previous = price
    return sides


def trades_from_file(path: str | Path, symbol: str) -> Iterator[Trade]:
    """Trades of a file standing for ``symbol``, in time order.

    Parquet with ``ts_ms, trade_id, side, price, amount`` (Binance style) or csv with
    ``ts_s, price, amount`` (Kraken style). Trade ids missing from the file are numbered from 1
    in file order; missing sides come from the tick rule. The whole file is checked before
    this returns: :class:`SourceFileError` at its first bad value.
    """
    return _file_trades(_check_trades(_read_source_table(Path(path))), symbol)


def _file_trades(columns: _TradeColumns, symbol: str) -> Iterator[Trade]:
    for ts, trade_id, price, amount, side in zip(columns.ts_us, columns.trade_ids, columns.prices,
                                                 columns.amounts, columns.sides, strict=True):
        yield Trade(symbol, int(trade_id), int(ts), price, amount, side)


def trades_from_candles(
    path: str | Path, symbol: str, trades_per_candle: int = 4
) -> Iterator[Trade]:
    """Trades laid inside each candle of a file (``ts, open, high, low, close, volume``).

    Each candle becomes ``trades_per_candle`` (>= 4) trades, evenly spaced inside its interval,
    walking open -> low -> high -> close when the candle closes up (else open -> high -> low ->
    close); extra trades interpolate along that path. The volume is split evenly, the last trade
    taking the remainder, so rebuilding the candles gives back the file's OHLCV exactly.
    Candles with no volume are skipped: no trade printed, so no candle would exist. The whole
    file is checked before this returns: :class:`SourceFileError` at its first bad value.
    """
    if trades_per_candle < 4:
        raise ValueError("trades_per_candle must be >= 4 to print open, high, low and close")
    return _candle_trades(_check_candles(_read_source_table(Path(path))), symbol, trades_per_candle)


def trades_from_source_file(path: str | Path, symbol: str) -> Iterator[Trade]:
    """Trades of a trades file (:func:`trades_from_file`) or a candles file
    (:func:`trades_from_candles`), told apart by their columns, the whole file checked first."""
    table = _read_source_table(Path(path))
    columns = set(table.columns())
    if {"open", "high", "low", "close"} <= columns:
        return _candle_trades(_check_candles(table), symbol, 4)
    if columns & {*TRADES_COLUMNS, *CSV_TRADES_COLUMNS}:
        return _file_trades(_check_trades(table), symbol)
    if columns & set(CANDLES_COLUMNS):
        return _candle_trades(_check_candles(table), symbol, 4)
    raise SourceFileError(table.path, f"neither a trades file ({', '.join(TRADES_COLUMNS)} or "
                                      f"{', '.join(CSV_TRADES_COLUMNS)}) nor a candles file "
                                      f"({', '.join(CANDLES_COLUMNS)}); found {', '.join(table.columns())}")


def _candle_trades(candles: _CandleColumns, symbol: str, trades_per_candle: int) -> Iterator[Trade]:
    opens_us = candles.opens_us
    gaps = np.diff(opens_us)
    interval_us = int(gaps[gaps > 0].min()) if (gaps > 0).any() else US_PER_MINUTE
    step_us = interval_us // (trades_per_candle + 1)
    trade_id = 0
    for open_us, o, h, low, c, volume in zip(
        opens_us, candles.opens, candles.highs, candles.lows, candles.closes, candles.volumes, strict=True,
    ):
        if not volume > 0:
            continue
        path_prices = _candle_path([o, low, h, c] if c >= o else [o, h, low, c],
                                   trades_per_candle, low, h)
        qty = volume / trades_per_candle
        spent = 0.0
        for i, price in enumerate(path_prices):
            last = i == trades_per_candle - 1
            # The remainder is exact (Sterbenz): spent >= volume / 2 when it is taken.
            amount = volume - spent if last else qty
            spent += amount
            trade_id += 1
            previous = path_prices[i - 1] if i else o
            side = Side.SELL if price < previous else Side.BUY
            yield Trade(symbol, trade_id, open_us + (i + 1) * step_us, price, amount, side)


def _candle_path(anchors: list[float], count: int, low: float, high: float) -> list[float]:
    """``count`` prices along the anchors' polyline, anchors included, clamped to [low, high]."""
    positions = np.linspace(0, len(anchors) - 1, count)
    prices = []
    for position in positions:
        index = min(int(position), len(anchors) - 2)
        fraction = position - index
        start, end = anchors[index], anchors[index + 1]
        if fraction == 0.0:
            price = start
        elif fraction == 1.0:
            price = end
        else:
            price = min(max(start + (end - start) * fraction, low), high)
        prices.append(float(price))
    return prices


def merge_by_time(*streams: Iterable[Trade]) -> Iterator[Trade]:
    """Merge time-ordered trade streams into one (ties keep the streams' order)."""
    return heapq.merge(*streams, key=lambda trade: trade.ts_us)


@dataclass(frozen=True, slots=True)
class Regime:
    """One stretch of simulated market: drift and volatility per minute, pull to its start."""

    name: str
    drift_per_min: float
    vol_scale: float
    mean_reversion_per_min: float
    activity: float


# Regimes the simulator switches between. Trends drift ~±1.2 %/hour; the range pulls the
# price back toward where the stretch began; the volatile one triples volatility and trading.
REGIMES = (
    Regime("trend_up", 0.0002, 1.0, 0.0, 1.0),
    Regime("trend_down", -0.0002, 1.0, 0.0, 1.0),
    Regime("range", 0.0, 0.6, 0.05, 0.8),
    Regime("volatile", 0.0, 3.0, 0.0, 1.6),
)


class MarketSimulator:
    """A seeded market for BTC/USDT, XRP/USDT and XRP/BTC; iterating yields its trades.

    Model: BTC/USDT and XRP/USDT follow geometric random walks stepped every second, their
    log-returns correlated (``correlation``, 0.6 by default, XRP ~1.6x BTC's volatility). A
    shared regime, redrawn every 30-120 minutes, sets the drift (trend up or down), pulls prices
    toward the stretch's starting level (range), or scales volatility and activity (volatile).
    BTC/USDT prints on a 0.1 tick, XRP/USDT on 0.00001; XRP/BTC trades at exactly
    XRP/USDT / BTC/USDT of the same second, so the cross rate never offers a free arbitrage.
    Each symbol trades 5-15 times a minute (more when volatile), at least once every minute,
    with random taker sides, lognormal sizes and its own increasing trade ids. The same seed
    gives the same trades, for any subset of ``symbols``.
    """

    BTC_START = 60_000.0
    XRP_START = 0.55
    BTC_VOL_PER_MIN = 0.0006
    XRP_VOL_PER_MIN = 0.001
    # Median trade sizes (base currency) for the lognormal quantities.
    MEDIAN_QTY: ClassVar[Mapping[str, float]] = {"BTC/USDT": 0.02, "XRP/USDT": 400.0, "XRP/BTC": 250.0}

    def __init__(
        self,
        seed: int,
        start_us: int,
        duration_s: int,
        symbols: Sequence[str] = TRADED_SYMBOLS,
        correlation: float = 0.6,
    ) -> None:
        unknown = set(symbols) - set(TRADED_SYMBOLS)
        if unknown:
            raise ValueError(f"the simulator knows {list(TRADED_SYMBOLS)}, not {sorted(unknown)}")
        if start_us % US_PER_MINUTE:
            raise ValueError("start_us must fall on a minute boundary")
        if duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if not -1.0 < correlation < 1.0:
            raise ValueError("correlation must lie in (-1, 1)")
        self.seed = seed
        self.start_us = start_us
        self.duration_s = duration_s
        self.symbols = tuple(symbols)
        self.correlation = correlation

    def __iter__(self) -> Iterator[Trade]:
        return self._trades()

    def _trades(self) -> Iterator[Trade]:
        rng = np.random.default_rng(self.seed)
        end_us = self.start_us + self.duration_s * US_PER_SECOND
        minutes = math.ceil(self.duration_s / 60)
        log_btc, log_xrp = math.log(self.BTC_START), math.log(self.XRP_START)
        next_id = dict.fromkeys(TRADED_SYMBOLS, 1)
        wanted = set(self.symbols)
        regime, regime_left, anchor = REGIMES[0], 0, (log_btc, log_xrp)
        mix = math.sqrt(1.0 - self.correlation**2)
        for minute in range(minutes):
            if regime_left == 0:
                regime = REGIMES[int(rng.integers(len(REGIMES)))]
                regime_left = int(rng.integers(30, 121))
                anchor = (log_btc, log_xrp)
            regime_left -= 1
            # 60 one-second steps of correlated shocks, plus drift and pull to the anchor.
            shocks = rng.standard_normal((2, 60)) * math.sqrt(1 / 60) * regime.vol_scale
            btc_steps = self.BTC_VOL_PER_MIN * shocks[0]
            xrp_steps = self.XRP_VOL_PER_MIN * (self.correlation * shocks[0] + mix * shocks[1])
            pull_btc = regime.mean_reversion_per_min * (anchor[0] - log_btc)
            pull_xrp = regime.mean_reversion_per_min * (anchor[1] - log_xrp)
            btc_path = log_btc + np.cumsum(btc_steps + (regime.drift_per_min + pull_btc) / 60)
            xrp_path = log_xrp + np.cumsum(xrp_steps + (regime.drift_per_min * 1.3 + pull_xrp) / 60)
            log_btc, log_xrp = float(btc_path[-1]), float(xrp_path[-1])
            btc_prices = np.round(np.exp(btc_path), 1)
            xrp_prices = np.round(np.exp(xrp_path), 5)

            minute_start = self.start_us + minute * US_PER_MINUTE
            span_us = min(US_PER_MINUTE, end_us - minute_start)
            low, high = round(5 * regime.activity), round(15 * regime.activity) + 1
            batch: list[tuple[int, int, str, float, float, Side]] = []
            for order, symbol in enumerate(TRADED_SYMBOLS):
                count = int(rng.integers(low, high))
                offsets = np.sort(rng.integers(0, span_us, count))
                buys = rng.random(count) < 0.5
                sizes = rng.lognormal(math.log(self.MEDIAN_QTY[symbol]), 0.9, count)
                if symbol not in wanted:
                    continue  # the draws above still happen: same market for any subset
                for offset, buy, size in zip(offsets.tolist(), buys.tolist(), sizes.tolist(), strict=True):
                    second = offset // US_PER_SECOND
                    btc, xrp = float(btc_prices[second]), float(xrp_prices[second])
                    price = (btc if symbol == "BTC/USDT" else
                             xrp if symbol == "XRP/USDT" else xrp / btc)
                    batch.append((minute_start + offset, order, symbol, price,
                                  round(size, 8) or 1e-8, Side.BUY if buy else Side.SELL))
            batch.sort(key=lambda row: (row[0], row[1]))
            for ts_us, _, symbol, price, qty, side in batch:
                trade_id = next_id[symbol]
                next_id[symbol] = trade_id + 1
                yield Trade(symbol, trade_id, ts_us, price, qty, side)
