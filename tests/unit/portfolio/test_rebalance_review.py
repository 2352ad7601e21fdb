"""The rebalancer's inputs, the drift watch and the allocation view, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triplegain_core.model.market import Asset, Candle, datetime_to_us
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.rebalance_review import (
    StoredQuote,
    WatchState,
    current_prices,
    quotes_for,
    trigger_signature,
    watch,
)
from triplegain_core.portfolio.rebalancing import RebalancingAgent
from triplegain_core.reporting.allocation import allocation_of

T0 = datetime(2026, 1, 5, tzinfo=UTC)
PRICES = {"BTC/USDT": 95_000.0, "XRP/USDT": 2.1, "XRP/BTC": 2.1 / 95_000.0}
HOUR = timedelta(hours=1)


def _snapshot(balances: dict[Asset, float], prices: dict[str, float] = PRICES) -> PortfolioSnapshot:
    return PortfolioSnapshot(account="paper", time=T0, balances=balances, prices=prices,
                             equity_usdt=0.0)


def _candle(symbol: str, minute: int, close: float) -> Candle:
    return Candle(symbol, "1m", datetime_to_us(T0 + timedelta(minutes=minute)), close, close,
                  close, close, 1.0, 1)


def test_newer_closes_replace_the_snapshot_prices() -> None:
    snapshot = _snapshot({Asset.USDT: 1.0})
    prices, times = current_prices(snapshot, {
        "XRP/USDT": _candle("XRP/USDT", 0, 2.2),  # closes at T0 + 1 min: newer
        "BTC/USDT": _candle("BTC/USDT", -1, 90_000.0),  # closed at T0: not newer
    })
    assert prices == {**PRICES, "XRP/USDT": 2.2}
    assert times["XRP/USDT"] == T0 + timedelta(minutes=1) and times["BTC/USDT"] == T0


def test_quotes_prefer_a_recent_book_then_same_moment_prices() -> None:
    times = dict.fromkeys(PRICES, T0)
    book = {s: StoredQuote(symbol=s, time=T0, bid=p * 0.999, ask=p * 1.001) for s, p in PRICES.items()}
    quotes, source = quotes_for(PRICES, times, book, T0)
    assert source == "book" and quotes["XRP/USDT"] == (2.1 * 0.999, 2.1 * 1.001)

    stale = {s: top.model_copy(update={"time": T0 - timedelta(minutes=6)}) for s, top in book.items()}
    quotes, source = quotes_for(PRICES, times, stale, T0)
    assert source == "last_price" and quotes["BTC/USDT"] == (95_000.0, 95_000.0)

    # One price two minutes newer than the others: their cross never existed.
    apart = {**times, "XRP/BTC": T0 + timedelta(minutes=2)}
    assert quotes_for(PRICES, apart, {}, T0) == ({}, "none")


def test_watch_requests_once_per_snapshot_and_replans_a_persisting_drift() -> None:
    agent = RebalancingAgent()
    heavy = agent.triggers({Asset.XRP: 1000.0, Asset.USDT: 100.0}, PRICES)
    signature = trigger_signature(heavy)
    assert "concentration:XRP" in signature

    first = watch(None, T0, heavy, HOUR)
    assert first.request and first.state == WatchState(snapshot_time=T0, requested_for=T0,
                                                       triggers=signature)
    assert not watch(first.state, T0, heavy, HOUR).request  # the same snapshot
    later = watch(first.state, T0 + timedelta(minutes=59), heavy, HOUR)
    assert not later.request and later.state.requested_for == T0
    assert watch(later.state, T0 + HOUR, heavy, HOUR).request

    # Different triggers are planned at once; no trigger is never planned.
    drift_only = agent.triggers({Asset.XRP: 500.0, Asset.USDT: 1000.0}, PRICES)
    assert trigger_signature(drift_only) != signature
    assert watch(later.state, T0 + timedelta(minutes=59, seconds=30), drift_only, HOUR).request
    calm = watch(later.state, T0 + timedelta(minutes=59, seconds=30), (), HOUR)
    assert not calm.request and calm.state.triggers == signature


def test_allocation_needs_every_price_for_shares() -> None:
    full = allocation_of(_snapshot({Asset.BTC: 0.01, Asset.USDT: 950.0, Asset.XRP: 0.0}))
    assert full.share(Asset.BTC) == pytest.approx(0.5) and full.share(Asset.XRP) == 0.0

    unpriced = allocation_of(_snapshot({Asset.BTC: 0.01, Asset.USDT: 950.0},
                                       prices={"XRP/USDT": 2.1}))
    assert unpriced.share(Asset.USDT) is None
    assert next(a for a in unpriced.assets if a.asset is Asset.BTC).value_usdt is None
