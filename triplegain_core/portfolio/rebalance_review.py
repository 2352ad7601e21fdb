"""What the RebalancingAgent is asked about an account, and when to ask it again.

The ``rebalance_plan`` asset and the ``rebalance_drift_sensor`` both build the agent's inputs
here, from the same stored records, so the sensor requests a plan exactly when the plan will
find a trigger:

- holdings: the balances of the account's latest portfolio snapshot (gross: the loans of
  open margin positions are not netted out, as the agent values balances);
- prices: the snapshot's, each replaced by the latest 1m close of its symbol when that candle
  closed after the snapshot (the executor snapshots once a minute; the candles may be newer);
- reference prices (the gain trigger): the prices of the last plan that recommended trades
  (the last rebalance, as far as this recommender knows), else of the account's first
  snapshot;
- regime and previous regime: the latest stored regime of the watched symbol, and the one
  the account's last plan saw;
- quotes (triangular check): the latest order-book tops when all three pairs have a recent
  one, else the prices as zero-spread quotes when they are of the same minute, else none.

Pure functions: :meth:`~triplegain_core.storage.portfolio_store.PortfolioStore.plan_inputs`
reads the records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from triplegain_core.model.market import TRADED_SYMBOLS, Asset, Candle, us_to_datetime
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.rebalancing import (
    Quote,
    RebalancePlan,
    RebalancingAgent,
    TriangularCycle,
    TriggerHit,
)
from triplegain_core.reporting.reports import ASSET_ORDER, markdown_table

# Where the triangular check's quotes came from (the rebalance_plans.quote_source values).
QuoteSource = Literal["book", "last_price", "none"]
# A book top older than this before the latest price no longer says where the market is.
MAX_QUOTE_AGE = timedelta(minutes=5)
# Last prices this close in time are taken as one moment of the market.
SAME_MOMENT = timedelta(minutes=1)


class StoredQuote(BaseModel):
    """Best bid and ask of one pair from a stored order-book snapshot, as stored: unlike a
    :class:`Quote` it may be stale or crossed, which :func:`quotes_for` checks."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    time: datetime
    bid: float
    ask: float


class PlanInputs(BaseModel):
    """Everything :meth:`RebalancingAgent.evaluate` is called with for one account."""

    model_config = ConfigDict(frozen=True)

    snapshot: PortfolioSnapshot
    prices: dict[str, float]
    reference_prices: dict[str, float]
    regime: str | None
    previous_regime: str | None
    quotes: dict[str, tuple[float, float]]  # symbol -> (bid, ask)
    quote_source: QuoteSource


class StoredPlan(BaseModel):
    """A plan with what it was made from, as the ``rebalance_plans`` table keeps it."""

    model_config = ConfigDict(frozen=True)

    account: str
    snapshot_time: datetime
    regime: str | None
    previous_regime: str | None
    prices: dict[str, float]
    reference_prices: dict[str, float]
    quote_source: QuoteSource
    plan: RebalancePlan
    # Both directions of the triangular cycle at the quotes, profitable or not (the plan
    # keeps only the profitable ones); empty without quotes.
    cycles: tuple[TriangularCycle, ...] = ()


def current_prices(
    snapshot: PortfolioSnapshot, last_candles: Mapping[str, Candle]
) -> tuple[dict[str, float], dict[str, datetime]]:
    """The snapshot's prices, each replaced by its symbol's last close if that is newer, and
    the time each price is from."""
    prices = dict(snapshot.prices)
    times = dict.fromkeys(prices, snapshot.time)
    for symbol, candle in last_candles.items():
        closed_at = us_to_datetime(candle.close_time_us)
        if symbol in TRADED_SYMBOLS and closed_at > snapshot.time:
            prices[symbol] = candle.close
            times[symbol] = closed_at
    return prices, times


def quotes_for(
    prices: Mapping[str, float],
    price_times: Mapping[str, datetime],
    stored_quotes: Mapping[str, StoredQuote],
    at: datetime,
) -> tuple[dict[str, tuple[float, float]], QuoteSource]:
    """(symbol -> (bid, ask), source) for the triangular check.

    The book tops when every pair has a recent, uncrossed one; else the prices as zero-spread
    quotes when all three are from the same minute (prices of different moments make a cross
    rate that never existed, and a "profit" with it); else none.
    """
    tops = [top for symbol in TRADED_SYMBOLS if (top := stored_quotes.get(symbol)) is not None
            and top.time >= at - MAX_QUOTE_AGE and 0.0 < top.bid <= top.ask]
    if len(tops) == len(TRADED_SYMBOLS):
        return {top.symbol: (top.bid, top.ask) for top in tops}, "book"
    times = [time for symbol in TRADED_SYMBOLS if (time := price_times.get(symbol)) is not None]
    if (all(prices.get(symbol, 0.0) > 0.0 for symbol in TRADED_SYMBOLS)
            and len(times) == len(TRADED_SYMBOLS) and max(times) - min(times) <= SAME_MOMENT):
        return {symbol: (prices[symbol], prices[symbol]) for symbol in TRADED_SYMBOLS}, "last_price"
    return {}, "none"


def plan_inputs(
    snapshot: PortfolioSnapshot,
    first_snapshot: PortfolioSnapshot,
    last_candles: Mapping[str, Candle],
    stored_quotes: Mapping[str, StoredQuote],
    regime: str | None,
    last_plan: StoredPlan | None,
    last_rebalance: StoredPlan | None,
) -> PlanInputs:
    """The agent's inputs for one account (the rules are in the module docstring)."""
    prices, times = current_prices(snapshot, last_candles)
    newest = max(times.values(), default=snapshot.time)
    quotes, source = quotes_for(prices, times, stored_quotes, newest)
    reference = last_rebalance.prices if last_rebalance is not None else first_snapshot.prices
    return PlanInputs(
        snapshot=snapshot, prices=prices, reference_prices=dict(reference), regime=regime,
        previous_regime=last_plan.regime if last_plan is not None else None,
        quotes=quotes, quote_source=source,
    )


def triggers_for(agent: RebalancingAgent, inputs: PlanInputs) -> tuple[TriggerHit, ...]:
    """The triggers that fire on these inputs."""
    return agent.triggers(inputs.snapshot.balances, inputs.prices, inputs.reference_prices,
                          inputs.regime, inputs.previous_regime)


def make_plan(agent: RebalancingAgent, inputs: PlanInputs, time: datetime) -> StoredPlan:
    """Evaluate the agent on the inputs; the plan with what it was made from."""
    quotes = ({symbol: Quote(symbol=symbol, bid=bid, ask=ask)
               for symbol, (bid, ask) in inputs.quotes.items()} if inputs.quotes else None)
    plan = agent.evaluate(inputs.snapshot.balances, inputs.prices, time,
                          reference_prices=inputs.reference_prices, regime=inputs.regime,
                          previous_regime=inputs.previous_regime, quotes=quotes)
    return StoredPlan(
        account=inputs.snapshot.account, snapshot_time=inputs.snapshot.time, regime=inputs.regime,
        previous_regime=inputs.previous_regime, prices=inputs.prices,
        reference_prices=inputs.reference_prices, quote_source=inputs.quote_source, plan=plan,
        cycles=agent.triangular(quotes) if quotes is not None else (),
    )


def plan_markdown(stored: StoredPlan, target: Mapping[Asset, float]) -> str:
    """Triggers, trades, allocation before / target / after, and profitable cycles."""
    plan = stored.plan
    header = (f"### Account `{stored.account}`, snapshot"
              f" {stored.snapshot_time:%Y-%m-%d %H:%M} UTC\n\n"
              f"Regime: **{stored.regime or 'unknown'}** (previous plan: "
              f"{stored.previous_regime or 'none'}); equity {plan.equity_before_usdt:,.2f} USDT; "
              "recommendation only: the RiskAgent validates any trade taken from it.")
    if plan.triggers:
        triggers = markdown_table(
            ["trigger", "asset", "value", "threshold", "detail"],
            [[hit.trigger.value, hit.asset.value if hit.asset else "", f"{hit.value:+.4f}",
              f"{hit.threshold:.4f}", hit.detail] for hit in plan.triggers],
        )
    else:
        triggers = "No trigger fired: the allocation is within its bands, no trade recommended."
    sections = [header, "#### Triggers\n\n" + triggers]
    if plan.trades:
        sections.append("#### Trades to target\n\n" + markdown_table(
            ["symbol", "side", "quantity", "price", "fee", "sells", "buys", "value (USDT)"],
            [[t.symbol, t.side.value, f"{t.quantity:.8f}", f"{t.price:.8g}", f"{t.fee:.8f}",
              t.sells.value, t.buys.value, f"{t.value_usdt:,.2f}"] for t in plan.trades],
        ) + f"\n\nFees: {plan.fees_usdt:,.4f} USDT;"
          f" equity after: {plan.equity_after_usdt:,.2f} USDT.")
    sections.append("#### Allocation\n\n" + markdown_table(
        ["asset", "now", "target", "after the trades"],
        [[asset.value, f"{100 * plan.before[asset]:.1f}%", f"{100 * target[asset]:.1f}%",
          f"{100 * plan.after[asset]:.1f}%"] for asset in ASSET_ORDER],
    ))
    if stored.cycles:
        arbitrage = markdown_table(
            ["cycle", "gross", "net of fees", "profitable"],
            [[" -> ".join(a.value for a in cycle.path), f"{100 * cycle.gross_return:+.3f}%",
              f"{100 * cycle.net_return:+.3f}%", "**yes**" if cycle.profitable else "no"]
             for cycle in stored.cycles],
        ) + f"\n\nQuotes: {stored.quote_source}."
    else:
        arbitrage = "Not checked: no book tops, and the last prices are of different moments."
    sections.append("#### Triangular opportunities\n\n" + arbitrage)
    return "\n\n".join(sections) + "\n"


class WatchState(BaseModel):
    """What the drift watch remembers of one account between evaluations."""

    model_config = ConfigDict(frozen=True)

    snapshot_time: datetime  # the last snapshot evaluated
    requested_for: datetime | None = None  # the snapshot of the last plan requested
    triggers: tuple[str, ...] = ()  # the triggers of that request


class WatchDecision(BaseModel):
    """Whether to request a plan for one account now, why, and the state to remember."""

    model_config = ConfigDict(frozen=True)

    request: bool
    reason: str
    state: WatchState


def trigger_signature(hits: Sequence[TriggerHit]) -> tuple[str, ...]:
    """The fired triggers as sorted ``trigger:asset`` names (values left out: they move)."""
    return tuple(sorted(f"{h.trigger.value}:{h.asset.value if h.asset else '*'}" for h in hits))


def watch(
    previous: WatchState | None,
    snapshot_time: datetime,
    hits: Sequence[TriggerHit],
    replan_after: timedelta,
) -> WatchDecision:
    """Request a plan for a new snapshot whose triggers fire, unless the same triggers were
    already planned for less than ``replan_after`` (of snapshot time) ago: a persisting drift
    is re-planned now and then, not on every snapshot."""
    if previous is not None and snapshot_time <= previous.snapshot_time:
        return WatchDecision(
            request=False, state=previous,
            reason=f"no snapshot after {previous.snapshot_time:%Y-%m-%d %H:%M:%S} UTC",
        )
    requested_for = previous.requested_for if previous else None
    planned = previous.triggers if previous else ()
    unchanged = WatchState(snapshot_time=snapshot_time, requested_for=requested_for,
                           triggers=planned)
    if not hits:
        return WatchDecision(
            request=False, state=unchanged,
            reason=f"snapshot {snapshot_time:%Y-%m-%d %H:%M:%S} UTC is within every trigger",
        )
    signature = trigger_signature(hits)
    if (requested_for is not None and signature == planned
            and snapshot_time - requested_for < replan_after):
        return WatchDecision(
            request=False, state=unchanged,
            reason=(f"same triggers ({', '.join(signature)}) as the plan requested for "
                    f"{requested_for:%Y-%m-%d %H:%M:%S} UTC"),
        )
    return WatchDecision(
        request=True,
        state=WatchState(snapshot_time=snapshot_time, requested_for=snapshot_time,
                         triggers=signature),
        reason=f"triggers fired: {'; '.join(h.detail for h in hits)}",
    )
