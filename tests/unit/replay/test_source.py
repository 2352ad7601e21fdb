"""What the replay exchange plays: the symbol checked first, a file checked whole, real files as before."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from streamer.replay.source import replay_source
from triplegain_core.errors import UserMistake
from triplegain_core.marketdata.sources import MarketSimulator, SourceFileError
from triplegain_core.model.market import TRADED_SYMBOLS, US_PER_MINUTE

TRADES_FILES = {"binance_xrp-eth_trades.parquet": 12_477, "kraken_bch-eur_trades.csv": 148}
CANDLES_FILES = ("binance_alt-btc_1m.parquet", "binance_eth-btc_5m.parquet", "binance_xrp-eth_1m.parquet",
                 "binance_xrp-eth_5m.parquet", "binance_xrp-usdt-perp_1h.parquet",
                 "binance_xrp-usdt-perp_5m.parquet")


def test_an_unknown_symbol_is_refused_before_the_file_is_read(tmp_path: Path) -> None:
    """The symbol is named first: not even a missing file is looked at."""
    with pytest.raises(UserMistake) as raised:
        replay_source(str(tmp_path / "missing.parquet"), "DOGE/USDT", hours=1.0, seed=1)
    assert not isinstance(raised.value, SourceFileError)
    assert str(raised.value) == ("--symbol DOGE/USDT: not a traded symbol; "
                                 "choose one of BTC/USDT, XRP/USDT, XRP/BTC")


def test_a_bad_file_is_refused_whole_before_anything_replays(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text("ts_s,price,amount\n1672531436,2,3\n1672531437,2,3\n1,abc,2\n")
    with pytest.raises(SourceFileError) as raised:
        replay_source(str(path), "XRP/USDT", hours=1.0, seed=1)
    assert str(raised.value) == f"{path} line 4, column price: 'abc' is not a number (2 rows read)"


def test_the_simulator_replays_every_traded_symbol() -> None:
    source = replay_source("sim", "XRP/USDT", hours=2.0, seed=5)
    assert isinstance(source.trades, MarketSimulator)
    assert source.symbols == TRADED_SYMBOLS and source.minutes == 120


@pytest.mark.parametrize("name", [*TRADES_FILES, *CANDLES_FILES])
def test_every_real_file_still_replays(shared_data: Path, name: str) -> None:
    path = shared_data / name
    source = replay_source(str(path), "XRP/USDT", hours=1.0, seed=1)
    trades = list(source.trades)
    assert source.symbols == ("XRP/USDT",)
    assert all(t.symbol == "XRP/USDT" and t.price > 0 and t.qty >= 0 for t in trades)
    assert all(a.ts_us <= b.ts_us for a, b in itertools.pairwise(trades))
    assert source.start_us % US_PER_MINUTE == 0 and source.start_us <= trades[0].ts_us
    assert trades[-1].ts_us < source.start_us + source.minutes * US_PER_MINUTE
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    # A trades file gives one trade per row; a candles file four per candle that traded.
    expected = TRADES_FILES[name] if name in TRADES_FILES else 4 * int((frame["volume"] > 0).sum())
    assert len(trades) == expected
