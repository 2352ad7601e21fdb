"""The `backtest_run` asset: a backtest of the stored candles, materialized as Dagster runs it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest

from triplegain_core.model.market import US_PER_MINUTE, Candle, datetime_to_us
from triplegain_core.storage.market_store import MarketStore
from triplegain_dagster.defs.backtests.backtest_run import backtest_run
from triplegain_dagster.resources import PostgresResource

RUN_CONFIG = {"ops": {"backtest_run": {"config": {"days": 3.0, "symbols": ["XRP/USDT"]}}}}


def _recent_real_candles(shared_data: Path) -> list[Candle]:
    """The real XRP/ETH 1m candles as XRP/USDT, moved to end an hour ago (the asset reads recent days)."""
    frame = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    now_minute = datetime_to_us(datetime.now(UTC)) // US_PER_MINUTE * US_PER_MINUTE
    start = now_minute - (len(frame) + 60) * US_PER_MINUTE
    return [Candle("XRP/USDT", "1m", start + i * US_PER_MINUTE, row.open, row.high, row.low, row.close,
                   row.volume, 1) for i, row in enumerate(frame.itertuples())]


@pytest.fixture
def resources(database_url: str, tmp_path: Path) -> dict[str, object]:
    return {"postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path))}


def test_a_backtest_of_the_stored_candles_is_stored_drawn_and_shown(
    shared_data: Path, db: psycopg.Connection, resources: dict[str, object], tmp_path: Path,
) -> None:
    MarketStore(db).write_candles(_recent_real_candles(shared_data))
    result = dg.materialize([backtest_run], resources=resources, run_config=RUN_CONFIG)
    assert result.success
    [event] = result.asset_materializations_for_node("backtest_run")
    metadata = {key: value.value for key, value in event.metadata.items()}
    run_id = metadata["run_id"]
    assert db.execute("SELECT candles, trades_hash FROM backtest_runs WHERE run_id = %s",
                      (run_id,)).fetchone() == (metadata["candles"], metadata["trades_hash"])
    assert metadata["candles"] == 2469
    for name in ("hold", "buy_and_hold:XRP", "paper", "paper:wavetrend"):
        assert f"| {name} |" in metadata["leaderboard"]
    assert metadata["equity"].startswith("![equity of every account](data:image/png;base64,")
    assert (tmp_path / "backtests" / run_id / "equity.png").is_file()
    figures = metadata["robustness"]
    assert figures["best"].startswith("paper") and 0.0 <= figures["pbo"] <= 1.0
    assert figures["sharpe_low"] < figures["sharpe"] < figures["sharpe_high"]
    assert metadata["monte_carlo"].startswith("![Monte Carlo of ")


def test_nothing_stored_is_a_failure_that_says_what_to_do(resources: dict[str, object]) -> None:
    with pytest.raises(dg.Failure, match="nothing to backtest: no 1m candle of XRP/USDT in the last 3 days"):
        dg.materialize([backtest_run], resources=resources, run_config=RUN_CONFIG)


def test_models_without_their_recordings_fail_the_run_naming_model_and_prompt(
    shared_data: Path, db: psycopg.Connection, resources: dict[str, object],
) -> None:
    MarketStore(db).write_candles(_recent_real_candles(shared_data))
    config = {"ops": {"backtest_run": {"config": {"days": 3.0, "symbols": ["XRP/USDT"], "models": True}}}}
    with pytest.raises(dg.Failure, match=r"no recorded answer of model \w+ for prompt [0-9a-f]{64} \(XRP/USDT at "):
        dg.materialize([backtest_run], resources=resources, run_config=config)
    assert db.execute("SELECT count(*) FROM backtest_runs").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM llm_calls").fetchone() == (0,)  # nobody was asked
