"""Entry blocks: account-wide reasons to refuse every new entry while exits go on.

Several guards may stop new entries at the same time for reasons of their own: a halt by hand
(``triplegain halt``), a market older than the stale-market guard allows, a volatility halt, the
failure breaker's reduce-only mode, candles seen only after the market could be seen again (an
entry at a moment long past). Each one sets or clears its own block here; while any block
is set, every entry intent of every account the kernel trades is rejected with the block's
reason (a recorded risk check, never a silent drop), and exits (stops, take-profits, closes,
a flatten) still go through. Blocks are lifted by whoever set them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from triplegain_core.risk.rules import RiskReason

# The reasons a block may carry: each names one guard.
BLOCK_REASONS = frozenset({
    RiskReason.TRADING_HALTED, RiskReason.STALE_MARKET, RiskReason.VOLATILITY_HALT, RiskReason.REDUCE_ONLY,
    RiskReason.MARKET_SEEN_LATE,
})


@dataclass(frozen=True, slots=True)
class EntryBlock:
    """One guard's block: why, since when (market time), and a sentence for people."""

    reason: RiskReason
    since: datetime
    detail: str


class EntryBlocks:
    """The blocks in force, at most one per reason; entries are refused while any is set."""

    def __init__(self) -> None:
        self._blocks: dict[RiskReason, EntryBlock] = {}
        self._reasons: tuple[RiskReason, ...] = ()

    def set(self, reason: RiskReason, since: datetime, detail: str) -> bool:
        """Block entries for ``reason``; False when that block was already set (kept as it was)."""
        if reason not in BLOCK_REASONS:
            raise ValueError(f"{reason} is not an entry block (one of {sorted(BLOCK_REASONS)})")
        if reason in self._blocks:
            return False
        self._blocks[reason] = EntryBlock(reason, since, detail)
        self._reasons = tuple(self._blocks)
        return True

    def clear(self, reason: RiskReason) -> EntryBlock | None:
        """Lift the block of ``reason``; the block lifted, or None when it was not set."""
        lifted = self._blocks.pop(reason, None)
        self._reasons = tuple(self._blocks)
        return lifted

    @property
    def reasons(self) -> tuple[RiskReason, ...]:
        """The reasons of the blocks in force, in the order they were set (empty: entries allowed)."""
        return self._reasons

    def get(self, reason: RiskReason) -> EntryBlock | None:
        """The block of ``reason``, or None when it is not set."""
        return self._blocks.get(reason)

    def __iter__(self) -> Iterator[EntryBlock]:
        return iter(self._blocks.values())
