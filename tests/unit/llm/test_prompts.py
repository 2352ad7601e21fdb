"""System prompts and the budgeted user prompt built from the market context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triplegain_core.llm.prompts import (
    MarketContext,
    PromptStyle,
    PromptTooLargeError,
    build_prompt,
    estimate_tokens,
    retry_prompt,
    system_prompt,
)
from triplegain_core.llm.trading_decision import Rejection, RejectionReason
from triplegain_core.model.market import Asset, Candle, datetime_to_us
from triplegain_core.model.orders import OrderPurpose
from triplegain_core.model.signals import Direction, Signal, SignalAction
from triplegain_core.portfolio.positions import Position, PositionStatus

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def candles(count: int) -> tuple[Candle, ...]:
    start = datetime_to_us(NOW - timedelta(minutes=count))
    return tuple(
        Candle("BTC/USDT", "1m", start + i * 60_000_000, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 3.0, 7)
        for i in range(count)
    )


def position(i: int, closed: bool) -> Position:
    return Position(
        position_id=f"p{i}", account="paper", symbol="BTC/USDT", direction=Direction.LONG,
        quantity=0.01, entry_price=100.0 + i, stop_loss=98.0, take_profit=110.0,
        opened_at=NOW - timedelta(hours=10 - i), entry_notional_usdt=1.0, equity_at_entry_usdt=1000.0,
        status=PositionStatus.CLOSED if closed else PositionStatus.OPEN,
        closed_at=NOW - timedelta(hours=9 - i) if closed else None,
        exit_price=105.0 + i if closed else None,
        exit_reason=OrderPurpose.TAKE_PROFIT if closed else None,
        realized_pnl=0.05 * i if closed else 0.0,
    )


def context(n_candles: int = 30, n_trades: int = 5) -> MarketContext:
    signal = Signal(
        signal_id="s1", strategy="ema_cross", strategy_version="1", symbol="BTC/USDT", timeframe="1m", time=NOW,
        action=SignalAction.LONG, strength=0.8, entry=130.0, stop_loss=128.0, take_profit=134.0,
        reason="test", indicators={"rsi_14": 61.0},
    )
    return MarketContext(
        symbol="BTC/USDT", time=NOW, price=130.5, candles=candles(n_candles),
        indicators={"rsi_14": 61.2, "ema_9": 129.9, "adx_14": 27.0}, regime="trending_up",
        signal=signal, positions=(position(99, closed=False),),
        recent_trades=tuple(position(i, closed=True) for i in range(n_trades)),
        balances={Asset.USDT: 900.0, Asset.BTC: 0.01}, equity_usdt=1001.3,
    )


def test_the_three_system_prompts_share_the_rules_and_differ_in_temperament() -> None:
    prompts = {style: system_prompt(style) for style in PromptStyle}
    assert len(set(prompts.values())) == 3
    for text in prompts.values():
        for key in ("action", "position_size_pct", "leverage", "stop_loss", "invalidation"):
            assert f'"{key}"' in text
        assert "from 0 to 20" in text and "from 1 to 3" in text
    assert "Preserve capital" in prompts[PromptStyle.CONSERVATIVE]
    assert "momentum" in prompts[PromptStyle.AGGRESSIVE]


def test_the_user_prompt_carries_every_part_of_the_context() -> None:
    prompt = build_prompt(context(), PromptStyle.STANDARD, token_budget=20_000)
    assert prompt.trimmed == ()
    for text in ("BTC/USDT", "130.5", "rsi_14: 61.2", "trending_up", "ema_cross on 1m: long strength 0.80",
                 "Equity (USDT): 1001.3", "Open long BTC/USDT", "pnl 0.2 (take_profit)", "Candles 1m"):
        assert text in prompt.user, text
    assert prompt.estimated_tokens == estimate_tokens(prompt.system) + estimate_tokens(prompt.user)


def test_estimate_tokens_is_chars_over_four_rounded_up() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2


def test_over_budget_the_oldest_candles_go_first_then_the_trades() -> None:
    full = build_prompt(context(n_candles=200), token_budget=50_000)
    budget = full.estimated_tokens - 500
    trimmed = build_prompt(context(n_candles=200), token_budget=budget)
    assert trimmed.estimated_tokens <= budget
    assert trimmed.trimmed and trimmed.trimmed[0].startswith("Candles")
    assert "Recent trades" in trimmed.user
    newest = candles(200)[-1].open_time.isoformat()
    oldest = candles(200)[0].open_time.isoformat()
    assert newest in trimmed.user and oldest not in trimmed.user


def test_a_tight_budget_drops_whole_sections_in_order_but_keeps_the_task() -> None:
    ctx = context(n_candles=200, n_trades=50)
    system_tokens = estimate_tokens(system_prompt(PromptStyle.STANDARD))
    prompt = build_prompt(ctx, token_budget=system_tokens + 128)
    assert "## Candles" not in prompt.user
    assert "## Recent trades" not in prompt.user
    assert "Symbol: BTC/USDT" in prompt.user
    assert prompt.estimated_tokens <= system_tokens + 128
    assert "## Portfolio and open positions" in prompt.user
    assert any(entry.startswith("Candles") and "all" in entry for entry in prompt.trimmed)


def test_a_budget_below_the_mandatory_part_is_a_clear_error() -> None:
    with pytest.raises(PromptTooLargeError, match="budget 370"):
        build_prompt(context(), token_budget=370)


def test_retry_prompt_says_why_the_answer_was_refused() -> None:
    prompt = build_prompt(context(), token_budget=20_000)
    again = retry_prompt(prompt, Rejection(reason=RejectionReason.OUT_OF_RANGE, detail="leverage > 3"))
    assert again.user.startswith(prompt.user)
    assert "out_of_range: leverage > 3" in again.user
    assert again.system == prompt.system
    assert again.estimated_tokens > prompt.estimated_tokens
