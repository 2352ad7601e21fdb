"""The backtest kernel against vectorbt: the same EMA cross signals, the same trades and equity.

The configuration and why it is the one both can express: tests/support/vectorbt_crosscheck.py.
"""

from __future__ import annotations

import pytest

from tests.support.vectorbt_crosscheck import compare


def test_the_same_signals_give_vectorbts_trades_and_final_equity_to_the_cent() -> None:
    result = compare()
    assert len(result.ours) > 100 and result.stops == 0  # many trades; no stop reached
    assert result.mismatches() == 0, list(zip(result.ours, result.theirs, strict=False))[:3]
    assert result.our_equity == pytest.approx(result.their_equity, abs=0.005)
