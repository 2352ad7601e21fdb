"""A live market that goes stale now and then, on a clock the test advances.

The executor runs on a stand-in for the wall clock (a :class:`~triplegain_core.risk.guards.WallClock`
over :class:`StepClock`), so nothing depends on how fast the machine is. Each step is one second
of that clock: while the market is fresh the "streamer" publishes an XRP/USDT trade price (and a
closed candle each minute) stamped with the clock, and its heartbeat; in a stale phase it
publishes nothing (a stopped streamer) or only its heartbeat (a silent exchange). A model
publishes a decision every few seconds, LONG and CLOSE in turn, whatever the market does.

After each cycle the run judges the market's age itself, from what it published, and counts the
orders the cycle placed while that age was beyond the guard's limit: the figure
``stale_market_orders`` (0 when the guard holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
import redis

from streamer.executor.loop import TradingLoop
from tests.support.decisions import store_approved
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.decisions.published import PublishedDecision
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_MINUTE, US_PER_SECOND, Candle
from triplegain_core.model.quotes import LastPrice
from triplegain_core.risk.guards import GuardSettings, WallClock
from triplegain_core.risk.rules import RiskLimits
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.trading_store import TradingStore

SYMBOL = "XRP/USDT"
PRICE = 0.5
T0 = 1_780_000_000 * US_PER_SECOND // US_PER_MINUTE * US_PER_MINUTE
WARM_MINUTES = 11
START_US = T0 + WARM_MINUTES * US_PER_MINUTE
STALE_LIMIT_S = 10.0


class StepClock:
    """A wall clock that moves only when told to."""

    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        """Move on by ``seconds``."""
        self.now_us += int(seconds * US_PER_SECOND)


@dataclass(frozen=True)
class Phase:
    """Seconds of market: fresh (trades flow), or stale with the streamer stopped or the
    exchange silent (heartbeat on, no trade)."""

    seconds: int
    fresh: bool = True
    heartbeat: bool = True


@dataclass
class StaleRun:
    """What a run did: cycles and orders, and those while the market was too old."""

    cycles: int = 0
    stale_cycles: int = 0
    stale_periods: int = 0
    orders: int = 0
    stale_market_orders: int = 0
    decisions: int = 0


def candle(minute: int, price: float = PRICE) -> Candle:
    """The closed XRP/USDT candle of ``minute`` after T0."""
    return Candle(SYMBOL, "1m", T0 + minute * US_PER_MINUTE, price, price * 1.001, price * 0.999, price, 100.0, 5)


def decision(decision_id: str, action: Action, market_us: int, ttl_s: float = 900) -> PublishedDecision:
    """A model's decision on the market of ``market_us``."""
    levels = (PRICE, PRICE * 0.99, PRICE * 1.02) if action is Action.LONG else (None, None, None)
    made = TradingDecision(action=action, symbol=SYMBOL, confidence=0.8, position_size_pct=10.0, leverage=1.0,
                           entry=levels[0], stop_loss=levels[1], take_profit=levels[2], invalidation="x",
                           reasoning="y", model="bench")
    return PublishedDecision.make(decision_id, "llm:bench", "bench", made, market_us, ttl_s)


def stale_market_loop(db: psycopg.Connection, client: redis.Redis, clock: StepClock,
                      guards: GuardSettings | None = None) -> TradingLoop:
    """A loop trading LLM decisions only, on ``clock``, warmed with a few fresh minutes."""
    # Every round trip loses its fees: no loss cooldown, or the model would soon trade no more.
    settings = Settings(symbols=(SYMBOL,), strategies=StrategySettings(enabled=(), technical_agent=False),
                        risk=RiskLimits(consecutive_losses=1_000_000),
                        guards=guards or GuardSettings(stale_market_s=STALE_LIMIT_S))
    intake = DecisionIntake(DecisionStream(client), DecisionLedger(db), start_id="0")
    loop = TradingLoop(settings, HotStateReader(client), TradingStore(db), start_stream_id="0", decisions=intake,
                       clock=WallClock(clock))
    publish(client, clock, [candle(m) for m in range(WARM_MINUTES)])
    loop.cycle()
    return loop


def publish(client: redis.Redis, clock: StepClock, closed: Sequence[Candle] = (), *, trade: bool = True) -> None:
    """What the streamer publishes at ``clock``'s now: a trade price (unless the exchange is
    silent), closed candles, its heartbeat."""
    now = clock.now_us
    prices = [LastPrice(SYMBOL, PRICE, now)] if trade else []
    # Alive but with no trade, the heartbeat names no new last trade.
    beat = {"ts_us": now, "last_trade_ts_us": now} if trade else {"ts_us": now}
    HotStatePublisher(client).publish(prices, [], list(closed), beat)


def approve(db: psycopg.Connection, made: PublishedDecision) -> PublishedDecision:
    """Store ``made`` and its lifecycle as deliberation does before publishing it; returns it."""
    store_approved(DecisionLedger(db), made)
    return made


def run_stale_market(loop: TradingLoop, db: psycopg.Connection, client: redis.Redis, clock: StepClock,
                     phases: Sequence[Phase], decide_every_s: int = 3, limit_s: float = STALE_LIMIT_S) -> StaleRun:
    """Step ``loop`` one second at a time through ``phases``; see the module's docstring. The
    market is too old beyond ``limit_s`` (the guard's limit in the configuration it was given)."""
    run = StaleRun()
    stream = DecisionStream(client)
    newest_market_us = clock.now_us
    limit_us = int(limit_s * US_PER_SECOND)
    second = 0
    was_stale = False
    for phase in phases:
        for _ in range(phase.seconds):
            clock.advance(1)
            second += 1
            if phase.fresh:
                minute = (clock.now_us - T0) // US_PER_MINUTE
                closing = [candle(minute - 1)] if (clock.now_us - T0) % US_PER_MINUTE < US_PER_SECOND else []
                publish(client, clock, closing)
                newest_market_us = clock.now_us
            elif phase.heartbeat:
                publish(client, clock, trade=False)
            if second % decide_every_s == 0:
                run.decisions += 1
                action = Action.LONG if run.decisions % 2 else Action.CLOSE
                decision_id = f"bench-{run.decisions}"
                stream.publish(approve(db, decision(decision_id, action, newest_market_us)))
            before = _orders(db)
            loop.cycle()
            placed = _orders(db) - before
            stale = clock.now_us - newest_market_us > limit_us
            run.cycles += 1
            run.orders += placed
            if stale:
                run.stale_cycles += 1
                run.stale_market_orders += placed
                run.stale_periods += not was_stale
            was_stale = stale
    return run


def _orders(db: psycopg.Connection) -> int:
    row = db.execute("SELECT count(*) FROM orders").fetchone()
    assert row is not None
    return int(row[0])
