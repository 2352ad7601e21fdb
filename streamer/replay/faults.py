"""Faults the replay exchange can inject on demand, and the per-connection dice that decide them.

Connection faults run on a wall-clock period: ``drop_connection_every_s`` closes the
connection (code 1011), ``stall_every_s`` makes it go silent for ``stall_for_s`` (no data, no
heartbeat, no pong: what a half-dead TCP connection looks like from the client).

Frame faults hit ``update`` frames of the ``trade`` and ``book`` channels, the two channels a
client can check (trade ids are a per-book sequence; books carry a CRC32), each with its own
probability per frame: drop it, send it twice, hold it back behind the next frame (reorder),
or send it truncated (malformed JSON); ``corrupt_checksum_rate`` flips a bit of a book
update's checksum. Acks, snapshots, pongs and the ``ohlc``/``ticker``/``instrument``
channels are never hit, so a client always has a way to recover.

The dice are seeded per connection (``seed`` and the connection id), so a run is repeatable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum


class FrameFate(Enum):
    """What happens to one data frame on its way out."""

    DELIVER = "deliver"
    DROP = "drop"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    MALFORM = "malform"


@dataclass(frozen=True, slots=True)
class ReplayFaults:
    """Fault configuration of a :class:`~streamer.replay.exchange.ReplayExchange`.

    Rates are probabilities per eligible frame, in [0, 1], and their sum must not exceed 1.
    ``recovery_grace_s``: after a lossy fault (drop, malformed) on a trade frame, the exchange
    holds its replay before any batch that would push the lost trades out of Kraken's
    50-trade snapshot, until the client resubscribes with a snapshot or this many seconds
    pass, so that a client which does recover always can (see the replay exchange's
    docstring for why).
    """

    seed: int = 0
    drop_connection_every_s: float | None = None
    stall_every_s: float | None = None
    stall_for_s: float = 2.0
    drop_frame_rate: float = 0.0
    duplicate_frame_rate: float = 0.0
    reorder_frame_rate: float = 0.0
    malformed_frame_rate: float = 0.0
    corrupt_checksum_rate: float = 0.0
    recovery_grace_s: float = 5.0

    def __post_init__(self) -> None:
        rates = (self.drop_frame_rate, self.duplicate_frame_rate, self.reorder_frame_rate,
                 self.malformed_frame_rate, self.corrupt_checksum_rate)
        if any(not 0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError(f"fault rates must be within [0, 1], got {rates}")
        if sum(rates[:4]) > 1.0:
            raise ValueError("drop, duplicate, reorder and malformed rates must sum to <= 1")
        for name in ("drop_connection_every_s", "stall_every_s"):
            period = getattr(self, name)
            if period is not None and not period > 0:
                raise ValueError(f"{name} must be > 0 (or None for never), got {period}")
        if not self.stall_for_s > 0 or not self.recovery_grace_s > 0:
            raise ValueError("stall_for_s and recovery_grace_s must be > 0")

    @property
    def any(self) -> bool:
        """True when at least one fault is switched on."""
        return bool(self.drop_connection_every_s or self.stall_every_s or self.drop_frame_rate
                    or self.duplicate_frame_rate or self.reorder_frame_rate
                    or self.malformed_frame_rate or self.corrupt_checksum_rate)


NO_FAULTS = ReplayFaults()


@dataclass
class FaultCounts:
    """What the exchange injected, summed over connections (``ReplayExchange.faults_injected``)."""

    connections_dropped: int = 0
    stalls: int = 0
    frames_dropped: int = 0
    frames_duplicated: int = 0
    frames_reordered: int = 0
    frames_malformed: int = 0
    checksums_corrupted: int = 0


class FaultDice:
    """One connection's seeded decisions."""

    def __init__(self, faults: ReplayFaults, connection_id: int) -> None:
        self._faults = faults
        self._rng = random.Random(f"{faults.seed}:{connection_id}")
        f = faults
        # Cumulative thresholds: one draw picks at most one fate.
        self._edges = (
            (f.drop_frame_rate, FrameFate.DROP),
            (f.drop_frame_rate + f.duplicate_frame_rate, FrameFate.DUPLICATE),
            (f.drop_frame_rate + f.duplicate_frame_rate + f.reorder_frame_rate,
             FrameFate.REORDER),
            (f.drop_frame_rate + f.duplicate_frame_rate + f.reorder_frame_rate
             + f.malformed_frame_rate, FrameFate.MALFORM),
        )
        self._frame_faults = self._edges[-1][0] > 0

    def frame_fate(self) -> FrameFate:
        """The fate of the next eligible data frame."""
        if not self._frame_faults:
            return FrameFate.DELIVER
        draw = self._rng.random()
        for edge, fate in self._edges:
            if draw < edge:
                return fate
        return FrameFate.DELIVER

    def corrupt_checksum(self) -> bool:
        """Whether the next book update gets a wrong checksum."""
        rate = self._faults.corrupt_checksum_rate
        return rate > 0 and self._rng.random() < rate


def malformed(frame: str) -> str:
    """The frame cut in the middle: no longer valid JSON."""
    return frame[: max(1, len(frame) // 2)]
