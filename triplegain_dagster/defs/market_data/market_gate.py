"""The gate the analytics wait at: no refresh while the market data fails a blocking check.

The streamer's tables are external assets, so a failed check on them cannot stop the assets
downstream inside a run (Dagster blocks only what follows a step of the run, and an external
asset has none). The schedules that refresh what is built from them (the hourly analytics, the
features) ask here first: while the latest evaluation of a blocking check failed, they skip,
and the skip names the check. The checks run every quarter of an hour, so the gate opens by
itself once the data is repaired.
"""

import dagster as dg

from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.defs.market_data.market_quality import (
    candles_1m_complete,
    candles_1m_consistent,
    candles_1m_fresh,
    market_trades_consistent,
    market_trades_fresh,
)
from triplegain_dagster.defs.market_data.observations import market_freshness_checks
from triplegain_dagster.defs.market_data.trades import market_trades

MARKET_CHECKS = dg.AssetSelection.checks(
    candles_1m_consistent, candles_1m_complete, candles_1m_fresh, market_trades_consistent, market_trades_fresh,
    *market_freshness_checks)
"""The data-quality and freshness checks of the streamer's tables: what a job selects to run them,
the tables being external (observed, never written by Dagster). Their dbt source tests run with
the marts."""

BLOCKING_MARKET_CHECKS = (
    dg.AssetCheckKey(candles_1m.key, "candles_1m_consistent"),
    dg.AssetCheckKey(market_trades.key, "market_trades_consistent"),
)
"""The consistency checks (broken rows): a failure stops what is computed from the tables."""


def failed_market_checks(instance: dg.DagsterInstance) -> list[str]:
    """The blocking checks of the market data whose latest evaluation failed."""
    failed = []
    for key in BLOCKING_MARKET_CHECKS:
        record = instance.get_latest_asset_check_evaluation_record(key)
        # The record's status is FAILED for an evaluation that did not pass (not for a crash).
        if record is not None and record.status.value == "FAILED":
            failed.append(key.name)
    return failed


def market_gate_closed(instance: dg.DagsterInstance) -> dg.SkipReason | None:
    """A skip naming the failed blocking checks, or None when the market data may be used."""
    failed = failed_market_checks(instance)
    if not failed:
        return None
    return dg.SkipReason(f"the market data fails {', '.join(failed)}: nothing is computed from it until"
                         " the check passes again (it runs every 15 minutes)")
