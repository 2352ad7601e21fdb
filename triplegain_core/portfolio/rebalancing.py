"""The RebalancingAgent: keeps the BTC / USDT / XRP holdings near a target allocation.

It only recommends. :meth:`RebalancingAgent.evaluate` values the holdings in USDT, checks the
triggers and, when one fires, returns a :class:`RebalancePlan` with the trades that bring the
allocation back to target (respecting the minimum reserves), and the allocation before and
after them, fees included. The RiskAgent and the order path decide later whether to execute.

Triggers (all configurable, defaults from the product card):

- drift: an asset's share differs from its target by more than ``drift_threshold`` (absolute,
  so 0.10 is ten percentage points);
- concentration: one asset is more than ``max_asset_fraction`` of the equity;
- gain: the USDT price of BTC or XRP rose more than ``gain_threshold`` since the reference
  prices (those of the last rebalance);
- regime change: the market regime label differs from the previous one.

It also looks for triangular opportunities across BTC/USDT, XRP/USDT and XRP/BTC, in both
directions of the cycle, net of each leg's fee, at the quotes' bid/ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triplegain_core.model.market import INSTRUMENTS, TRADED_SYMBOLS, Asset, Side
from triplegain_core.portfolio.balances import USDT_PAIRS, MissingPriceError

_SUM_TOLERANCE = 1e-9


class RebalanceTrigger(StrEnum):
    """Why a rebalance was recommended."""

    DRIFT = "drift"
    CONCENTRATION = "concentration"
    GAIN = "gain"
    REGIME_CHANGE = "regime_change"


def _equal_target() -> dict[Asset, float]:
    return {asset: 1.0 / len(Asset) for asset in Asset}


class RebalanceConfig(BaseModel):
    """Target allocation, reserves, trigger thresholds and fees."""

    model_config = ConfigDict(frozen=True)

    target: dict[Asset, float] = Field(default_factory=_equal_target)
    # Minimum holdings in asset units, never sold below (e.g. USDT kept for fees and entries).
    min_reserve: dict[Asset, float] = Field(default_factory=dict)
    drift_threshold: float = Field(default=0.10, gt=0.0, le=1.0)
    max_asset_fraction: float = Field(default=0.60, gt=0.0, le=1.0)
    gain_threshold: float = Field(default=0.20, gt=0.0)
    fee_rates: dict[str, float] = Field(default_factory=lambda: dict.fromkeys(TRADED_SYMBOLS, 0.001))
    min_trade_usdt: float = Field(default=5.0, ge=0.0)
    min_arbitrage_edge: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> RebalanceConfig:
        if set(self.target) != set(Asset):
            raise ValueError(f"target must name exactly {[a.value for a in Asset]}, got {sorted(self.target)}")
        if any(share < 0.0 for share in self.target.values()):
            raise ValueError("target shares must be >= 0")
        if abs(sum(self.target.values()) - 1.0) > _SUM_TOLERANCE:
            raise ValueError(f"target shares must sum to 1, got {sum(self.target.values())}")
        if any(amount < 0.0 for amount in self.min_reserve.values()):
            raise ValueError("minimum reserves must be >= 0")
        if set(self.fee_rates) != set(TRADED_SYMBOLS) or any(not 0.0 <= f < 0.1 for f in self.fee_rates.values()):
            raise ValueError(f"fee_rates needs a rate in [0, 0.1) for each of {list(TRADED_SYMBOLS)}")
        return self


class TriggerHit(BaseModel):
    """One trigger that fired, with the measured value and the threshold it crossed."""

    model_config = ConfigDict(frozen=True)

    trigger: RebalanceTrigger
    asset: Asset | None
    value: float
    threshold: float
    detail: str


class RebalanceTrade(BaseModel):
    """One recommended market trade. ``quantity`` is in the base asset, ``fee`` in the quote."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    side: Side
    quantity: float = Field(gt=0.0)
    price: float = Field(gt=0.0)
    fee: float = Field(ge=0.0)
    sells: Asset
    buys: Asset
    value_usdt: float = Field(gt=0.0)


class Quote(BaseModel):
    """Best bid and ask of one pair."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    bid: float = Field(gt=0.0)
    ask: float = Field(gt=0.0)

    @model_validator(mode="after")
    def _not_crossed(self) -> Quote:
        if self.bid > self.ask:
            raise ValueError(f"{self.symbol} quote is crossed: bid {self.bid} > ask {self.ask}")
        return self


class ArbitrageLeg(BaseModel):
    """One leg of a triangular cycle: the pair, the side, the price taken and its fee rate."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    side: Side
    price: float
    fee_rate: float


class TriangularCycle(BaseModel):
    """One direction of the USDT -> ... -> USDT cycle and what a unit of USDT comes back as."""

    model_config = ConfigDict(frozen=True)

    path: tuple[Asset, Asset, Asset, Asset]
    legs: tuple[ArbitrageLeg, ArbitrageLeg, ArbitrageLeg]
    gross_return: float
    net_return: float
    profitable: bool


class RebalancePlan(BaseModel):
    """The recommendation: triggers, trades, allocation before and after (fees included)."""

    model_config = ConfigDict(frozen=True)

    time: datetime
    triggers: tuple[TriggerHit, ...]
    trades: tuple[RebalanceTrade, ...]
    before: dict[Asset, float]
    after: dict[Asset, float]
    equity_before_usdt: float
    equity_after_usdt: float
    fees_usdt: float
    arbitrage: tuple[TriangularCycle, ...]

    @property
    def needed(self) -> bool:
        """Whether there is anything to do."""
        return bool(self.trades or self.arbitrage)


def _usdt_price(asset: Asset, prices: Mapping[str, float]) -> float:
    if asset is Asset.USDT:
        return 1.0
    price = prices.get(USDT_PAIRS[asset])
    if price is None or price <= 0.0:
        raise MissingPriceError(f"no positive {USDT_PAIRS[asset]} price to value {asset}")
    return price


def _pair_between(first: Asset, second: Asset) -> str:
    for symbol, instrument in INSTRUMENTS.items():
        if {instrument.base, instrument.quote} == {first, second}:
            return symbol
    raise ValueError(f"no traded pair between {first} and {second}")


class RebalancingAgent:
    """Checks the triggers on a portfolio and recommends the trades back to target."""

    def __init__(self, config: RebalanceConfig = RebalanceConfig()) -> None:
        self.config = config

    def allocation(self, balances: Mapping[Asset, float], prices: Mapping[str, float]) -> dict[Asset, float]:
        """Each asset's share of the USDT equity (all zero for an empty portfolio)."""
        values = self._values(balances, prices)
        equity = sum(values.values())
        return {asset: (value / equity if equity > 0.0 else 0.0) for asset, value in values.items()}

    def _values(self, balances: Mapping[Asset, float], prices: Mapping[str, float]) -> dict[Asset, float]:
        if any(amount < 0.0 for amount in balances.values()):
            raise ValueError(f"balances must be >= 0, got {dict(balances)}")
        return {asset: balances.get(asset, 0.0) * _usdt_price(asset, prices) if balances.get(asset, 0.0) else 0.0
                for asset in Asset}

    def triggers(
        self,
        balances: Mapping[Asset, float],
        prices: Mapping[str, float],
        reference_prices: Mapping[str, float] | None = None,
        regime: str | None = None,
        previous_regime: str | None = None,
    ) -> tuple[TriggerHit, ...]:
        """Every trigger that fires on these holdings and prices."""
        cfg = self.config
        shares = self.allocation(balances, prices)
        hits: list[TriggerHit] = []
        if sum(shares.values()) > 0.0:
            for asset in Asset:
                drift = shares[asset] - cfg.target[asset]
                if abs(drift) > cfg.drift_threshold:
                    hits.append(TriggerHit(trigger=RebalanceTrigger.DRIFT, asset=asset, value=drift,
                                           threshold=cfg.drift_threshold,
                                           detail=f"{asset} at {shares[asset]:.1%} vs target {cfg.target[asset]:.1%}"))
            for asset in Asset:
                if shares[asset] > cfg.max_asset_fraction:
                    hits.append(TriggerHit(trigger=RebalanceTrigger.CONCENTRATION, asset=asset, value=shares[asset],
                                           threshold=cfg.max_asset_fraction,
                                           detail=f"{asset} is {shares[asset]:.1%} of the equity"))
        for asset, pair in USDT_PAIRS.items():
            reference = (reference_prices or {}).get(pair)
            now = prices.get(pair)
            if reference and now:
                gain = now / reference - 1.0
                if gain > cfg.gain_threshold:
                    hits.append(TriggerHit(trigger=RebalanceTrigger.GAIN, asset=asset, value=gain,
                                           threshold=cfg.gain_threshold,
                                           detail=f"{pair} up {gain:.1%} since the last rebalance"))
        if regime is not None and previous_regime is not None and regime != previous_regime:
            hits.append(TriggerHit(trigger=RebalanceTrigger.REGIME_CHANGE, asset=None, value=1.0, threshold=0.0,
                                   detail=f"regime changed from {previous_regime} to {regime}"))
        return tuple(hits)

    def target_values(self, balances: Mapping[Asset, float], prices: Mapping[str, float]) -> dict[Asset, float]:
        """USDT value each asset should hold: the target share, raised to the reserve where needed.

        When reserves lift some assets above their share, the others give up the excess in
        proportion to what they hold above their own reserve.
        """
        cfg = self.config
        equity = sum(self._values(balances, prices).values())
        floors = {asset: cfg.min_reserve.get(asset, 0.0) * _usdt_price(asset, prices) for asset in Asset}
        if sum(floors.values()) > equity:
            raise ValueError(f"minimum reserves worth {sum(floors.values()):.2f} USDT exceed the equity {equity:.2f}")
        desired = {asset: max(cfg.target[asset] * equity, floors[asset]) for asset in Asset}
        excess = sum(desired.values()) - equity
        if excess > 0.0:
            slack = {asset: desired[asset] - floors[asset] for asset in Asset}
            total = sum(slack.values())
            desired = {asset: desired[asset] - excess * slack[asset] / total for asset in Asset}
        return desired

    def _trade(self, sells: Asset, buys: Asset, value: float, prices: Mapping[str, float]) -> RebalanceTrade:
        """Move ``value`` USDT worth out of ``sells`` into ``buys`` on their direct pair."""
        symbol = _pair_between(sells, buys)
        instrument = INSTRUMENTS[symbol]
        fee_rate = self.config.fee_rates[symbol]
        price = prices.get(symbol)
        if price is None:  # the cross can be implied from the two USDT prices
            price = _usdt_price(instrument.base, prices) / _usdt_price(instrument.quote, prices)
        if instrument.base is sells:
            # Sell exactly the excess; the fee comes out of the quote received.
            quantity = value / _usdt_price(sells, prices)
            side = Side.SELL
        else:
            # Spend exactly the excess of the quote, fee included, so the seller's reserve holds.
            quantity = value / (_usdt_price(buys, prices) * (1.0 + fee_rate))
            side = Side.BUY
        return RebalanceTrade(symbol=symbol, side=side, quantity=quantity, price=price,
                              fee=fee_rate * quantity * price, sells=sells, buys=buys, value_usdt=value)

    def trades_to_target(
        self, balances: Mapping[Asset, float], prices: Mapping[str, float]
    ) -> tuple[RebalanceTrade, ...]:
        """The trades from the current holdings to :meth:`target_values` (at most two).

        Over-weight assets are matched to under-weight ones, largest first, each pair of them
        trading on their direct pair; trades worth less than ``min_trade_usdt`` are dropped.
        """
        values = self._values(balances, prices)
        desired = self.target_values(balances, prices)
        surplus = sorted(((values[a] - desired[a], a) for a in Asset if values[a] > desired[a]), reverse=True)
        deficit = sorted(((desired[a] - values[a], a) for a in Asset if desired[a] > values[a]), reverse=True)
        trades: list[RebalanceTrade] = []
        remaining = {asset: amount for amount, asset in deficit}
        for amount, seller in surplus:
            for _, buyer in deficit:
                move = min(amount, remaining[buyer])
                if move <= 0.0:
                    continue
                amount -= move
                remaining[buyer] -= move
                if move >= self.config.min_trade_usdt:
                    trades.append(self._trade(seller, buyer, move, prices))
        return tuple(trades)

    @staticmethod
    def apply(balances: Mapping[Asset, float], trades: tuple[RebalanceTrade, ...]) -> dict[Asset, float]:
        """Balances after the trades, fees charged in the quote asset as the executors do."""
        result = {asset: balances.get(asset, 0.0) for asset in Asset}
        for trade in trades:
            instrument = INSTRUMENTS[trade.symbol]
            sign = 1.0 if trade.side is Side.BUY else -1.0
            result[instrument.base] += sign * trade.quantity
            result[instrument.quote] += -sign * trade.quantity * trade.price - trade.fee
        # Selling a whole holding can leave a few ulps below zero; anything more is a real bug.
        for asset, amount in result.items():
            if amount < 0.0:
                if amount < -_SUM_TOLERANCE * max(1.0, balances.get(asset, 0.0)):
                    raise ValueError(f"trades overdraw {asset}: {amount}")
                result[asset] = 0.0
        return result

    def triangular(self, quotes: Mapping[str, Quote]) -> tuple[TriangularCycle, TriangularCycle]:
        """Both directions of the USDT cycle through BTC and XRP, at bid/ask, net of fees.

        USDT -> BTC -> XRP -> USDT buys BTC/USDT at the ask, buys XRP/BTC at the ask and sells
        XRP/USDT at the bid; the reverse buys XRP/USDT at the ask, sells XRP/BTC at the bid and
        sells BTC/USDT at the bid. Returns are per unit of USDT put in, minus one.
        """
        missing = [s for s in TRADED_SYMBOLS if s not in quotes]
        if missing:
            raise MissingPriceError(f"triangular check needs quotes for {missing}")
        fees = self.config.fee_rates
        btc_usdt, xrp_usdt, xrp_btc = quotes["BTC/USDT"], quotes["XRP/USDT"], quotes["XRP/BTC"]
        forward = (
            (Asset.USDT, Asset.BTC, Asset.XRP, Asset.USDT),
            (ArbitrageLeg(symbol="BTC/USDT", side=Side.BUY, price=btc_usdt.ask, fee_rate=fees["BTC/USDT"]),
             ArbitrageLeg(symbol="XRP/BTC", side=Side.BUY, price=xrp_btc.ask, fee_rate=fees["XRP/BTC"]),
             ArbitrageLeg(symbol="XRP/USDT", side=Side.SELL, price=xrp_usdt.bid, fee_rate=fees["XRP/USDT"])),
            xrp_usdt.bid / (btc_usdt.ask * xrp_btc.ask),
        )
        backward = (
            (Asset.USDT, Asset.XRP, Asset.BTC, Asset.USDT),
            (ArbitrageLeg(symbol="XRP/USDT", side=Side.BUY, price=xrp_usdt.ask, fee_rate=fees["XRP/USDT"]),
             ArbitrageLeg(symbol="XRP/BTC", side=Side.SELL, price=xrp_btc.bid, fee_rate=fees["XRP/BTC"]),
             ArbitrageLeg(symbol="BTC/USDT", side=Side.SELL, price=btc_usdt.bid, fee_rate=fees["BTC/USDT"])),
            xrp_btc.bid * btc_usdt.bid / xrp_usdt.ask,
        )
        cycles = []
        for path, legs, gross in (forward, backward):
            net = gross
            for leg in legs:
                net *= 1.0 - leg.fee_rate
            cycles.append(TriangularCycle(path=path, legs=legs, gross_return=gross - 1.0, net_return=net - 1.0,
                                          profitable=net - 1.0 > self.config.min_arbitrage_edge))
        return cycles[0], cycles[1]

    def evaluate(
        self,
        balances: Mapping[Asset, float],
        prices: Mapping[str, float],
        time: datetime,
        reference_prices: Mapping[str, float] | None = None,
        regime: str | None = None,
        previous_regime: str | None = None,
        quotes: Mapping[str, Quote] | None = None,
    ) -> RebalancePlan:
        """The plan for these holdings: trades only when a trigger fired, plus profitable cycles."""
        hits = self.triggers(balances, prices, reference_prices, regime, previous_regime)
        trades = self.trades_to_target(balances, prices) if hits else ()
        after_balances = self.apply(balances, trades)
        values_after = self._values(after_balances, prices)
        equity_before = sum(self._values(balances, prices).values())
        fees = sum(trade.fee * _usdt_price(INSTRUMENTS[trade.symbol].quote, prices) for trade in trades)
        arbitrage = tuple(c for c in self.triangular(quotes) if c.profitable) if quotes is not None else ()
        return RebalancePlan(
            time=time,
            triggers=hits,
            trades=trades,
            before=self.allocation(balances, prices),
            after=self.allocation(after_balances, prices),
            equity_before_usdt=equity_before,
            equity_after_usdt=sum(values_after.values()),
            fees_usdt=fees,
            arbitrage=arbitrage,
        )
