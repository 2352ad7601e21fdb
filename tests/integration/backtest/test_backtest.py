"""`triplegain backtest` against the live executor and against itself, on real PostgreSQL.

The backtest of a real-data stretch trades as the live executor replaying the same candles
through Redis (the kernel test's replay), account by account; a run is stored with its hashes
and `--rerun` reproduces it from what is stored, fill for fill.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg
import pytest
import redis

from streamer.cli.main import main
from streamer.executor.loop import TradingLoop
from tests.support.candle_feed import feed_and_drain
from triplegain_core.backtest.engine import run_backtest
from triplegain_core.backtest.history import history_from_candles
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStateReader
from triplegain_core.model.market import Candle, datetime_to_us
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.trading_store import TradingStore

SYMBOL = "XRP/USDT"
XRP_FILE = "binance_xrp-eth_1m.parquet"


def _real_candles(shared_data: Path) -> list[Candle]:
    frame = pd.read_parquet(shared_data / XRP_FILE)
    return [Candle(SYMBOL, "1m", datetime_to_us(row.ts.to_pydatetime()), row.open, row.high, row.low, row.close,
                   row.volume, 1)
            for row in frame.itertuples()]


def test_a_backtest_trades_as_the_live_executor_replaying_the_same_candles(
    shared_data: Path, redis_client: redis.Redis, db: psycopg.Connection,
) -> None:
    candles = _real_candles(shared_data)
    settings = Settings(symbols=(SYMBOL,))
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0")
    feed_and_drain(loop, redis_client, candles)
    result = run_backtest(settings, history_from_candles(candles))

    store = TradingStore(db)
    assert [a.name for a in result.accounts] == [a.name for a in loop.kernel.accounts]
    traded = 0
    for account in result.accounts:
        live = db.execute("SELECT fill_id, time, side, quantity, price, fee FROM fills WHERE account = %s"
                          " ORDER BY time, fill_id", (account.name,)).fetchall()
        tested = sorted(((f.fill_id, f.time, f.side.value, f.quantity, f.price, f.fee) for f in account.trail.fills),
                        key=lambda row: (row[1], row[0]))
        assert live == tested, account.name
        assert store.positions(account.name) == sorted(account.trail.positions.values(),
                                                       key=lambda p: (p.opened_at, p.position_id)), account.name
        curve = [(datetime_to_us(t), e) for t, e in store.equity_curve(account.name)]
        assert curve == list(account.trail.curve.points()), account.name
        traded += bool(tested)
    assert traded >= 5  # not vacuous: most accounts traded


def test_a_stored_run_is_reproduced_from_what_is_stored(
    shared_data: Path, database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    monkeypatch.setenv("TRIPLEGAIN_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIPLEGAIN_DATA_DIR", str(tmp_path))
    assert main(["backtest", "--symbols", SYMBOL]) == 2
    assert "nothing to backtest: no 1m candle of XRP/USDT" in capsys.readouterr().err
    MarketStore(db).write_candles(_real_candles(shared_data)[:1200])

    assert main(["backtest", "--symbols", SYMBOL]) == 0
    out = capsys.readouterr()
    assert "100%" in out.err  # the progress bar reached its end
    run_id, config_hash, data_hash, trades_hash = db.execute(
        "SELECT run_id, config_hash, data_hash, trades_hash FROM backtest_runs").fetchone()
    assert f"run {run_id}" in out.out and "buy_and_hold:XRP" in out.out
    pictures = sorted((tmp_path / "backtests" / run_id).glob("*.png"))
    names = [p.name for p in pictures]
    assert len(names) == 3 and names[:2] == ["equity.png", "monte-carlo.png"] and names[2].startswith("trades-")
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000 for p in pictures)
    kinds = dict(db.execute("SELECT kind, count(*) FROM backtest_accounts WHERE run_id = %s GROUP BY kind",
                            (run_id,)).fetchall())
    assert kinds["technical"] == 1 and kinds["strategy"] >= 5 and kinds["baseline"] >= 3
    trades = db.execute("SELECT count(*) FROM backtest_trades WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert trades == db.execute("SELECT sum(trades) FROM backtest_accounts WHERE run_id = %s",
                                (run_id,)).fetchone()[0] + db.execute(
        "SELECT count(*) FROM backtest_trades WHERE run_id = %s AND closed_at IS NULL", (run_id,)).fetchone()[0]
    assert trades > 0
    # Every closed trade is counted once under the regime at its entry.
    assert db.execute("SELECT sum(trades) FROM backtest_regimes WHERE run_id = %s", (run_id,)).fetchone()[0] == \
        db.execute("SELECT count(*) FROM backtest_trades WHERE run_id = %s AND closed_at IS NOT NULL",
                   (run_id,)).fetchone()[0]
    assert "by the regime at entry" in out.out and "best by Sharpe: paper" in out.out
    figures = db.execute("SELECT robustness FROM backtest_runs WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert figures["reshuffled"]["runs"] == 1000 and len(figures["bootstrapped"]["max_drawdown"]) == 3

    assert main(["backtest", "--rerun", run_id]) == 0
    assert f"reproduced {run_id}: the same trades, fill for fill" in capsys.readouterr().out
    rerun_id = db.execute("SELECT run_id FROM backtest_runs WHERE reproduces = %s", (run_id,)).fetchone()[0]
    assert (tmp_path / "backtests" / rerun_id / "equity.png").is_file()  # drawn in the same data folder
    again = db.execute("SELECT config_hash, data_hash, trades_hash FROM backtest_runs WHERE reproduces = %s",
                       (run_id,)).fetchone()
    assert again == (config_hash, data_hash, trades_hash)

    # The data changed under a stored run: said, not silently run on other candles.
    MarketStore(db).write_candles(_real_candles(shared_data)[1200:1300])
    assert main(["backtest", "--rerun", run_id]) == 2
    assert "the data changed since the run" in capsys.readouterr().err
    assert main(["backtest", "--rerun", "bt-nosuchrun"]) == 2
    assert "no such backtest run; the latest: " in capsys.readouterr().err
