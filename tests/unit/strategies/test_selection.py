"""Which strategies the executor runs: configuration, validation, symbols, and what they read."""

from __future__ import annotations

from pathlib import Path

import pytest

from triplegain_core.config import ConfigError, StrategySettings, load_settings
from triplegain_core.strategies.registry import discover_strategies
from triplegain_core.strategies.selection import candle_needs, restrict, select_strategies, timeframe_of


def test_defaults_run_every_builtin_on_every_pair() -> None:
    settings = StrategySettings()
    catalog = select_strategies(settings, ("BTC/USDT", "XRP/USDT", "XRP/BTC"), entry_point_group=None)
    assert len(catalog.strategies) == 11 and catalog.failures == ()
    assert settings.technical_agent and settings.tested == ()


def test_enabled_disabled_and_symbols_narrow_the_catalog() -> None:
    settings = StrategySettings(enabled=("wavetrend", "ratio_trading", "typo_strategy"), disabled=("grid_rsi",),
                                config={"wavetrend": {"timeframe": "15m"}})
    catalog = select_strategies(settings, ("XRP/USDT",), entry_point_group=None)
    assert [s.name for s in catalog.strategies] == ["wavetrend"]
    assert catalog.get("wavetrend").symbols == ("XRP/USDT",)
    assert catalog.get("wavetrend").config.timeframe == "15m"
    reasons = {r.name: r.reason for r in catalog.failures}
    assert reasons["ratio_trading"] == "trades none of the configured symbols ['XRP/USDT']"
    assert reasons["typo_strategy"] == "enabled by configuration but not loaded"
    assert reasons["grid_rsi"] == "disabled by configuration"
    assert reasons["trend_momentum"] == "not enabled by configuration"


def test_a_strategy_config_the_strategy_refuses_is_reported_and_skipped() -> None:
    settings = StrategySettings(config={"wavetrend": {"timeframe": 5}})
    catalog = select_strategies(settings, ("XRP/USDT",), entry_point_group=None)
    assert "wavetrend" not in {s.name for s in catalog.strategies}
    assert "invalid config" in next(r.reason for r in catalog.failures if r.name == "wavetrend")
    assert len(catalog.strategies) == 9  # the others still run (ratio trading has no XRP/USDT)


def test_restrict_keeps_the_symbols_a_strategy_shares_with_the_process() -> None:
    catalog = restrict(discover_strategies(entry_point_group=None), StrategySettings(), ("BTC/USDT", "XRP/BTC"))
    assert catalog.get("wavetrend").symbols == ("BTC/USDT", "XRP/BTC")
    assert catalog.get("ratio_trading").symbols == ("XRP/BTC",)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('enabled = ["wavetrend"]\ndisabled = ["wavetrend"]\n', "both enabled and disabled"),
        ('enabled = ["wavetrend", "wavetrend"]\n', "names a strategy twice"),
        ('enabled = [" "]\n', "non-empty"),
        ("no_such_field = 1\n", "no_such_field"),
    ],
)
def test_a_broken_strategies_section_is_a_clear_config_error(tmp_path: Path, section: str, message: str) -> None:
    config = tmp_path / "tg.toml"
    config.write_text("[strategies]\n" + section)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def test_the_strategies_section_is_read_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "tg.toml"
    config.write_text('[strategies]\nenabled = ["wavetrend"]\ntested = ["wavetrend"]\ntechnical_agent = false\n'
                      '[strategies.config.wavetrend]\ntimeframe = "1h"\n')
    settings = load_settings(config, environ={}).strategies
    assert settings == StrategySettings(enabled=("wavetrend",), tested=("wavetrend",), technical_agent=False,
                                        config={"wavetrend": {"timeframe": "1h"}})


def test_candle_needs_of_the_builtins() -> None:
    strategies = discover_strategies(entry_point_group=None).strategies
    needs = candle_needs(strategies)
    assert needs.timeframes == ("1m", "5m", "1h")
    assert needs.capacity == 300
    by_name = {s.name: timeframe_of(s) for s in strategies}
    assert by_name["ema9_trend_flip"] == "1h" and by_name["momentum_scalp"] == "1m"
    assert by_name["market_making"] is None  # reads books, not candles
