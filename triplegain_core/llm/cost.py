"""What a call cost, from the tokens billed and the model's prices."""

from __future__ import annotations

from triplegain_core.llm.models import TokenPrices, TokenUsage

TOKENS_PER_PRICE_UNIT = 1_000_000


def call_cost_usd(usage: TokenUsage, prices: TokenPrices) -> float:
    """US dollars for one answer: input and output tokens at their per-million prices."""
    return (
        usage.input_tokens * prices.input_usd_per_mtok
        + usage.output_tokens * prices.output_usd_per_mtok
    ) / TOKENS_PER_PRICE_UNIT
