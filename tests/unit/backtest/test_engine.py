"""A backtest: the live kernel over a history, deterministic, beside its baselines, on one leaderboard."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from triplegain_core.backtest import engine
from triplegain_core.backtest.baselines import DRIFT, baseline_accounts
from triplegain_core.backtest.engine import AccountKind, backtest_config, config_hash, run_backtest, settings_of
from triplegain_core.backtest.history import (
    EmptyHistory,
    SourceFile,
    history_from_candles,
    history_from_files,
)
from triplegain_core.backtest.leaderboard import leaderboard, scorecard
from triplegain_core.backtest.regimes import WARMING_UP, RegimeTimeline, metrics_by_regime
from triplegain_core.backtest.robustness import robustness, summary
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.model.market import US_PER_MINUTE, Asset, Candle
from triplegain_core.strategies.selection import select_strategies

T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
XRP_FILE = "binance_xrp-eth_1m.parquet"


def _walk(symbol: str, start: float, count: int, seed: int, sigma: float = 0.002) -> list[Candle]:
    closes = start * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, sigma, count)))
    return [Candle(symbol, "1m", T0 + i * US_PER_MINUTE, c, c * 1.001, c * 0.999, c, 1000.0, 5)
            for i, c in enumerate(closes)]


@pytest.fixture(scope="module")
def real_history(shared_data: Path):
    return history_from_files([SourceFile(path=str(shared_data / XRP_FILE), symbol="XRP/USDT")])


def test_the_same_history_and_configuration_give_the_same_trades_fill_for_fill(real_history) -> None:
    settings = Settings(symbols=("XRP/USDT",))
    first, second = run_backtest(settings, real_history), run_backtest(settings, real_history)
    assert first.trades_hash == second.trades_hash and first.config_hash == second.config_hash
    fills = [f for a in first.accounts for f in a.trail.fills]
    assert fills == [f for a in second.accounts for f in a.trail.fills]
    # Not vacuous: several accounts traded the real market.
    assert len(fills) > 100 and sum(bool(a.trail.fills) for a in first.accounts) >= 5
    # A different configuration trades differently, and hashes differently.
    cautious = settings.model_copy(update={"risk": settings.risk.model_copy(update={"risk_per_trade": 0.002})})
    other = run_backtest(cautious, real_history)
    assert other.config_hash != first.config_hash and other.trades_hash != first.trades_hash


def test_every_account_is_valued_each_minute_and_named_by_its_kind(real_history) -> None:
    result = run_backtest(Settings(symbols=("XRP/USDT",)), real_history)
    kinds = {a.name: a.kind for a in result.accounts}
    assert kinds["paper"] is AccountKind.TECHNICAL
    assert kinds["paper:wavetrend"] is AccountKind.STRATEGY
    for account in result.accounts:
        times = list(account.trail.curve.times_us)
        assert times == [c.close_time_us for c in real_history.candles]  # one pair: a snapshot each minute


@pytest.mark.parametrize("workers", [2, 3])
def test_accounts_dealt_out_to_processes_trade_as_in_one(real_history, workers: int) -> None:
    settings = Settings(symbols=("XRP/USDT",))
    alone = run_backtest(settings, real_history)
    reported: list[tuple[int, int]] = []
    shared = run_backtest(settings, real_history, workers=workers, progress=lambda done, total: reported.append(
        (done, total)))
    assert [a.name for a in shared.accounts] == [a.name for a in alone.accounts]
    assert shared.trades_hash == alone.trades_hash and shared.config_hash == alone.config_hash
    for ours, theirs in zip(shared.accounts, alone.accounts, strict=True):
        assert (ours.kind, ours.trail.signals, ours.trail.fees_usdt) == (theirs.kind, theirs.trail.signals,
                                                                         theirs.trail.fees_usdt)
        assert bytes(ours.trail.curve.equity) == bytes(theirs.trail.curve.equity)
        assert ours.trail.positions == theirs.trail.positions
    assert sum(bool(a.trail.fills) for a in shared.accounts) >= 5
    assert reported[-1] == (len(real_history.candles), len(real_history.candles))


def test_a_failing_worker_fails_the_backtest_with_its_reason(real_history) -> None:
    settings = Settings(symbols=("XRP/USDT",))
    first = select_strategies(settings.strategies, settings.symbols).strategies[0]
    # Five copies of one strategy among two workers: one of them gets two, which its kernel refuses.
    with pytest.raises(RuntimeError, match=r"(?s)backtest worker \d failed:.*strategy names must be unique"):
        run_backtest(settings, real_history, strategies=[first] * 5, workers=2)


def test_the_data_hash_names_the_candles_not_their_order() -> None:
    candles = _walk("XRP/USDT", 0.5, 50, 1) + _walk("BTC/USDT", 60_000, 50, 2)
    history = history_from_candles(candles)
    assert history.data_hash == history_from_candles(list(reversed(candles))).data_hash
    assert history.symbols == ("BTC/USDT", "XRP/USDT")
    # Moments in order: all candles closing at a time together, by close time.
    closes = [c.close_time_us for c in history.candles]
    assert closes == sorted(closes)
    changed = [*candles[:10], dataclasses.replace(candles[10], close=candles[10].close * 1.0001), *candles[11:]]
    assert history_from_candles(changed).data_hash != history.data_hash
    with pytest.raises(EmptyHistory, match="no 1m candle of XRP/BTC"):
        history_from_candles(candles, ["XRP/BTC"])


def test_progress_counts_the_decided_candles_and_a_start_past_the_history_decides_none() -> None:
    history = history_from_candles(_walk("XRP/USDT", 0.5, 120, 1))
    settings = Settings(symbols=("XRP/USDT",))
    reports: list[tuple[int, int]] = []
    run_backtest(settings, history, decide_from_us=T0 + 20 * US_PER_MINUTE, progress=lambda *r: reports.append(r))
    assert reports[-1] == (101, 101)  # the 19 candles closed before the start only warm the kernel up
    reports.clear()
    result = run_backtest(settings, history, decide_from_us=T0 + 999 * US_PER_MINUTE,
                          progress=lambda *r: reports.append(r))
    assert reports == [] and not any(a.trail.fills for a in result.accounts)


def test_the_batch_size_never_changes_a_trade(monkeypatch: pytest.MonkeyPatch) -> None:
    # Three pairs close together each minute: a batch must not cut a moment in two.
    history = history_from_candles(_walk("XRP/USDT", 0.5, 600, 1) + _walk("BTC/USDT", 60_000, 600, 2)
                                   + _walk("XRP/BTC", 0.5 / 60_000, 600, 3))
    settings = Settings(symbols=("XRP/USDT", "BTC/USDT", "XRP/BTC"))
    whole = run_backtest(settings, history)
    assert sum(len(a.trail.fills) for a in whole.accounts) > 0
    monkeypatch.setattr(engine, "BATCH_CANDLES", 7)
    assert run_backtest(settings, history).trades_hash == whole.trades_hash


def test_a_stored_configuration_gives_back_the_settings_it_was_made_from() -> None:
    settings = Settings(symbols=("XRP/USDT", "BTC/USDT"), fee_rate=0.002,
                        strategies=StrategySettings(enabled=("wavetrend",)),
                        database_url="postgresql://user:secret@db/x")
    config = backtest_config(settings)
    assert "database_url" not in config and "secret" not in str(config)
    assert config["strategy_versions"] == {"wavetrend": config["strategy_versions"]["wavetrend"]}
    again = settings_of(config)
    assert backtest_config(again) == config and config_hash(backtest_config(again)) == config_hash(config)


def test_baselines_hold_buy_and_hold_and_rebalance_at_a_cost() -> None:
    xrp, btc = _walk("XRP/USDT", 0.5, 600, 3, sigma=0.004), _walk("BTC/USDT", 60_000, 600, 4, sigma=0.004)
    history = history_from_candles(xrp + btc)
    settings = Settings(symbols=("XRP/USDT", "BTC/USDT"),
                        starting_balances={Asset.USDT: 1000.0, Asset.XRP: 2000.0, Asset.BTC: 0.0})
    baselines = {a.name: list(a.trail.curve.equity) for a in baseline_accounts(settings, history)}
    assert set(baselines) == {"hold", "buy_and_hold:BTC", "buy_and_hold:USDT", "buy_and_hold:XRP", "equal_weight"}
    start = 1000.0 + 2000.0 * xrp[0].close
    assert all(curve[0] == pytest.approx(start) for curve in baselines.values())
    assert baselines["hold"][-1] == pytest.approx(1000.0 + 2000.0 * xrp[-1].close)
    cost = settings.fee_rate + settings.slippage
    btc_held = start * (1 - cost) / btc[0].close  # the USDT and the XRP both bought BTC
    assert baselines["buy_and_hold:BTC"][-1] == pytest.approx(btc_held * btc[-1].close)
    assert baselines["buy_and_hold:USDT"][-1] == pytest.approx(start - 2000.0 * xrp[0].close * cost)
    # Equal weight: it paid for rebalancing, so it differs from a one-off split held.
    split = start / 3 * (1 + xrp[-1].close / xrp[0].close + btc[-1].close / btc[0].close)
    assert baselines["equal_weight"][-1] != pytest.approx(split, rel=1e-6)
    assert 0 < DRIFT < 1


def test_the_leaderboard_ranks_every_account_and_baseline_on_the_same_measures(real_history) -> None:
    settings = Settings(symbols=("XRP/USDT",))
    result = run_backtest(settings, real_history)
    accounts = (*result.accounts, *baseline_accounts(settings, real_history))
    rows = leaderboard(accounts, real_history.start_us, real_history.end_us)
    assert [r.rank for r in rows] == list(range(1, len(accounts) + 1))
    returns = [r.return_pct for r in rows if r.return_pct is not None]
    assert returns == sorted(returns, reverse=True)
    by_name = {r.account: r for r in rows}
    hold = by_name["hold"]
    assert hold.trades == 0 and hold.exposure == 0.0 and hold.fees_usdt == 0.0 and hold.win_rate is None
    traded = [r for r in rows if r.trades]
    assert traded and all(0 < r.exposure <= 1 and r.fees_usdt > 0 and r.expectancy_usdt is not None
                          for r in traded)
    for row in traded:
        closed = [p for p in result.account(row.account).trail.positions.values() if p.closed_at is not None]
        assert row.trades == len(closed)
        assert row.win_rate == pytest.approx(sum(p.realized_pnl > 0 for p in closed) / len(closed))


def test_each_trade_is_counted_under_the_regime_known_at_its_entry(real_history) -> None:
    result = run_backtest(Settings(symbols=("XRP/USDT",)), real_history)
    timeline = RegimeTimeline(real_history)
    rows = metrics_by_regime(result.accounts, timeline)
    for account in result.accounts:
        closed = [p for p in account.trail.positions.values() if p.closed_at is not None]
        assert sum(r.trades for r in rows if r.account == account.name) == len(closed)
    assert {r.regime for r in rows} <= {"bull", "bear", "sideways", WARMING_UP} and len({r.regime for r in rows}) >= 2
    # Known at entry: the label of the 5m candle closed by then, not of the one being formed.
    first_close = real_history.candles[0].open_time_us + 5 * US_PER_MINUTE
    assert timeline.at("XRP/USDT", first_close - 1) == WARMING_UP
    late = real_history.end_us
    assert timeline.at("XRP/USDT", late) == timeline.at("XRP/USDT", late - (late - first_close) % (5 * US_PER_MINUTE))


def test_the_best_account_is_judged_for_luck_and_overfitting_with_a_seed(real_history) -> None:
    settings = Settings(symbols=("XRP/USDT",))
    card = scorecard(settings, run_backtest(settings, real_history))
    robust = robustness(card, runs=300, seed=3)
    traded = {r.account for r in card.rows if r.trades and r.kind is not AccountKind.BASELINE}
    assert robust.best in traded
    assert robust.trials == sum(r.kind is not AccountKind.BASELINE for r in card.rows)
    assert robust.deflated_sharpe is not None and 0.0 <= robust.deflated_sharpe <= 1.0
    assert robust.overfitting is not None and robust.overfitting.splits == 12_870
    assert robust.reshuffled is not None and robust.bootstrapped is not None
    again = robustness(card, runs=300, seed=3)
    assert again.bootstrapped is not None and np.array_equal(again.bootstrapped.paths, robust.bootstrapped.paths)
    figures = summary(robust)
    assert figures["best"] == robust.best and figures["reshuffled"]["seed"] == 3
    # More trials tried (say, parameter sets) deflate the same Sharpe ratio further.
    tried_more = robustness(card, trials=500, runs=300, seed=3)
    assert tried_more.deflated_sharpe is not None and tried_more.deflated_sharpe <= robust.deflated_sharpe
