"""The counters of one ingest run."""

from __future__ import annotations

from dataclasses import dataclass

from triplegain_core.marketdata.sequencer import SequenceCounts


@dataclass
class StreamerStats(SequenceCounts):
    """Counters of one run, updated live (``TradeStreamer.stats``): the sequencer's, and those
    of the connection, the channels and the writer."""

    trades: int = 0  # unique trades applied
    candles: int = 0  # closed (or corrected) candles written, the final flush included
    rejected_frames: int = 0
    batches: int = 0  # batches that wrote something to the database
    late_trades: int = 0
    last_trade_ts_us: int = 0
    gap_resyncs: int = 0  # trade snapshots asked to close a gap
    resumed_trades: int = 0  # stored trades replayed into the candles at start (warm_up)
    connections: int = 0
    reconnects: int = 0
    stale_connections: int = 0
    book_snapshots: int = 0
    book_updates: int = 0
    book_checksum_failures: int = 0
    ohlc_checked: int = 0
    ohlc_mismatches: int = 0
    backpressure_waits: int = 0
