"""A gated strategy's fixture market: one 5m window, the rules-baseline signal on it and a model's answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel

from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState

SYMBOL = "XRP/USDT"
T0 = 1_700_000_000_000_000
SPAN = 300_000_000
CANDLES = 40
MODEL = "claude"


def snapshot() -> MarketSnapshot:
    close = 2.0 + 0.01 * np.arange(CANDLES, dtype=float)
    window = CandleWindow.from_arrays(SYMBOL, "5m", T0 + np.arange(CANDLES) * SPAN, close, close + 0.01,
                                      close - 0.01, close, np.ones(CANDLES))
    return MarketSnapshot(ts_us=T0 + CANDLES * SPAN, candles={(SYMBOL, "5m"): window},
                          prices={SYMBOL: float(close[-1])})


def baseline(market: MarketSnapshot, config: BaseModel | None = None,
             state: StrategyState | None = None) -> Signal:
    window = market.window(SYMBOL, "5m")
    assert window is not None
    entry = float(window.close[-1])
    return Signal(
        signal_id=f"trend:{SYMBOL}:{window.last_open_time_us}", strategy="trend", strategy_version="1",
        symbol=SYMBOL, timeframe="5m", time=datetime.fromtimestamp(window.last_close_time_us / 1e6, UTC),
        action=SignalAction.LONG, strength=0.8, entry=entry, stop_loss=entry * 0.99,
        take_profit=entry * 1.02, reason="EMA cross up", indicators={"ema_fast": entry},
    )


def answer(action: str = "LONG", confidence: float = 0.8, **changes: object) -> str:
    levels = {
        "LONG": {"entry": 2.39, "stop_loss": 2.35, "take_profit": 2.5},
        "SHORT": {"entry": 2.39, "stop_loss": 2.45, "take_profit": 2.3},
    }.get(action, {"entry": None, "stop_loss": None, "take_profit": None})
    # The model proposes its own size and levels: the gate must ignore them.
    return json.dumps({"action": action, "symbol": SYMBOL, "confidence": confidence, "position_size_pct": 20,
                       "leverage": 3, **levels, "invalidation": "close below 2.35",
                       "reasoning": "trend intact", **changes})
