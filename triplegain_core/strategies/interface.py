"""The plugin contract every strategy fulfils, and the per-symbol state the runner keeps for it.

A strategy is any module (or object) with:

- ``NAME`` (str, unique) and ``VERSION`` (str);
- ``SYMBOLS``: the traded symbols it runs on (a tuple, each one of ``market.TRADED_SYMBOLS``);
- ``Config``: a pydantic model whose every field has a default (``Config()`` must build);
- ``generate_signal(snapshot, config, state) -> Signal | None``, a pure function of
  its three arguments;
- optionally ``READS``: the snapshot parts it reads (a subset of
  ``marketdata.snapshot.SNAPSHOT_PARTS``, all of them when absent). The runner calls it again only
  when one of those parts, or its state, changed: a candle strategy costs nothing on the
  cycles between two candle closes;
- optionally ``SIGNAL_CANDIDATES(candles, first, config) -> bool array`` (:class:`CandidateRows`),
  for a strategy that reads only candles of its own symbol on its ``config.timeframe``: the rows
  where it may signal. A backtest hands the kernel thousands of candles at once; the kernel asks each
  such strategy once per batch and does not call ``generate_signal`` on the rows where it
  cannot signal. It may mark more rows than signal (a vectorised indicator may differ from the
  one ``generate_signal`` uses in the last bit: mark the near cases), never fewer: the batch's
  trades must be those of calling ``generate_signal`` on every row (:mod:`.candidates` holds
  the look-back bookkeeping most rules need).

The registry checks all of it on load; the runner calls ``generate_signal`` once per symbol
per cycle with that symbol's :class:`StrategyState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel

from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.signals import Signal, SignalAction


@dataclass(slots=True)
class StrategyState:
    """What one strategy remembers about one symbol between cycles.

    The runner owns it: it records every emitted signal (so a strategy knows whether it holds
    an intent it may CLOSE or flip), and ``memory`` keeps a strategy's own scalars (e.g. the
    last grid level it traded) across cycles.
    """

    symbol: str
    open_action: SignalAction | None = None
    open_entry: float | None = None
    last_signal_id: str | None = None
    signals_emitted: int = 0
    memory: dict[str, float] = field(default_factory=dict)

    def record(self, signal: Signal) -> None:
        """Note an emitted signal: an entry opens (or flips) the intent, CLOSE clears it."""
        self.last_signal_id = signal.signal_id
        self.signals_emitted += 1
        if signal.action is SignalAction.CLOSE:
            self.open_action, self.open_entry = None, None
        else:
            self.open_action, self.open_entry = signal.action, signal.entry

    def hold(self, action: SignalAction | None, entry: float | None) -> None:
        """Take what the strategy's account really holds on this symbol, whatever the strategy
        last said: an entry the risk rules rejected, or a position a stop closed, leaves it flat."""
        self.open_action, self.open_entry = action, entry


@runtime_checkable
class SignalGenerator(Protocol):
    """The callable part of the contract."""

    def __call__(
        self, snapshot: MarketSnapshot, config: BaseModel, state: StrategyState
    ) -> Signal | None: ...


@runtime_checkable
class CandidateRows(Protocol):
    """The optional batch part of the contract (``SIGNAL_CANDIDATES``).

    ``candles`` is one symbol's series of the strategy's timeframe: the history the strategy's
    window held before the batch, then the candles the batch closes, from row ``first`` on.
    Returns one bool per row from ``first`` on: False at a row promises that ``generate_signal``,
    on the snapshot whose window of this symbol ends at that row, returns None and changes no
    state, whatever the state."""

    def __call__(self, candles: CandleWindow, first: int, config: BaseModel) -> np.ndarray: ...
