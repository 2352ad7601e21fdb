"""Strategy discovery: built-ins load, broken plugins are reported with the reason and skipped."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import BaseModel

from triplegain_core.config import ConfigError, load_settings
from triplegain_core.strategies.registry import (
    ENTRY_POINT_GROUP,
    StrategyLoadError,
    discover_strategies,
    known_strategy_names,
    load_strategy,
)

BUILTINS = {
    "trend_momentum", "volatility_breakout", "ema9_trend_flip", "mean_reversion", "grid_rsi", "momentum_scalp",
    "order_flow", "market_making", "ratio_trading", "wavetrend", "whale_sentiment",
}

GOOD = '''
from pydantic import BaseModel
NAME = "{name}"
VERSION = "0.1"
SYMBOLS = ("XRP/USDT",)
class Config(BaseModel):
    threshold: float = 0.5
def generate_signal(snapshot, config, state):
    return None
'''

BROKEN = {
    "no_generate": '''
from pydantic import BaseModel
NAME = "no_generate"; VERSION = "1"; SYMBOLS = ("XRP/USDT",)
class Config(BaseModel):
    x: int = 1
''',
    "required_config": '''
from pydantic import BaseModel
NAME = "required_config"; VERSION = "1"; SYMBOLS = ("XRP/USDT",)
class Config(BaseModel):
    x: int
def generate_signal(snapshot, config, state):
    return None
''',
    "foreign_symbol": '''
from pydantic import BaseModel
NAME = "foreign_symbol"; VERSION = "1"; SYMBOLS = ("DOGE/USDT",)
class Config(BaseModel):
    pass
def generate_signal(snapshot, config, state):
    return None
''',
    "import_error": '''
raise RuntimeError("plugin exploded at import")
''',
    "bad_signature": '''
from pydantic import BaseModel
NAME = "bad_signature"; VERSION = "1"; SYMBOLS = ("XRP/USDT",)
class Config(BaseModel):
    pass
def generate_signal(snapshot):
    return None
''',
    "dict_config": '''
NAME = "dict_config"; VERSION = "1"; SYMBOLS = ("XRP/USDT",)
Config = dict
def generate_signal(snapshot, config, state):
    return None
''',
    "list_symbols": '''
from pydantic import BaseModel
NAME = "list_symbols"; VERSION = "1"; SYMBOLS = ["XRP/USDT"]
class Config(BaseModel):
    pass
def generate_signal(snapshot, config, state):
    return None
''',
    "validator_crash": '''
from pydantic import BaseModel, model_validator
NAME = "validator_crash"; VERSION = "1"; SYMBOLS = ("XRP/USDT",)
class Config(BaseModel):
    x: int = 1
    @model_validator(mode="after")
    def _boom(self):
        raise TypeError("validator bug")
def generate_signal(snapshot, config, state):
    return None
''',
}

REASONS = {
    "no_generate": "missing required attribute(s): generate_signal",
    "required_config": "Config fields without a default: ['x']",
    "foreign_symbol": "SYMBOLS ['DOGE/USDT'] are not traded",
    "import_error": "import failed: RuntimeError: plugin exploded at import",
    "bad_signature": "generate_signal must take (snapshot, config, state)",
    "dict_config": "Config must be a pydantic model class",
    "list_symbols": "SYMBOLS must be a non-empty tuple",
    "validator_crash": "validation failed: TypeError: validator bug",
}


def _package(root: Path, files: dict[str, str]) -> str:
    name = f"tg_plugins_{uuid.uuid4().hex[:8]}"
    folder = root / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for module, source in files.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return name


def test_builtins_all_load() -> None:
    catalog = discover_strategies(entry_point_group=None)
    assert {s.name for s in catalog.strategies} == BUILTINS
    assert catalog.failures == ()
    assert all(report.loaded and report.reason == "loaded" for report in catalog.reports)
    assert catalog.get("ratio_trading").symbols == ("XRP/BTC",)


def test_broken_plugins_are_reported_and_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    files = {**BROKEN, "a_good": GOOD.format(name="good"), "z_duplicate": GOOD.format(name="good"),
             "_private_helper": "raise RuntimeError('never imported')"}
    package = _package(tmp_path, files)
    catalog = discover_strategies(packages=[package], entry_point_group=None)
    assert [s.name for s in catalog.strategies] == ["good"]
    assert catalog.get("good").source == f"{package}.a_good"  # modules load in name order
    by_source = {report.source.rsplit(".", 1)[1]: report for report in catalog.reports}
    assert set(by_source) == set(BROKEN) | {"a_good", "z_duplicate"}
    for module, reason in REASONS.items():
        assert not by_source[module].loaded
        assert reason in by_source[module].reason, (module, by_source[module].reason)
    assert by_source["z_duplicate"].reason == "duplicate strategy name 'good' (already loaded)"
    assert len(catalog.failures) == len(BROKEN) + 1


def test_entry_point_plugins_are_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"tg_ep_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(GOOD.format(name="external")))
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nexternal = {module}\nmissing = {module}_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    catalog = discover_strategies(packages=(), entry_point_group=ENTRY_POINT_GROUP)
    assert [s.name for s in catalog.strategies] == ["external"]
    failed = [r for r in catalog.failures if "missing" in r.source]
    assert len(failed) == 1 and failed[0].reason.startswith("import failed: ModuleNotFoundError")


def test_known_names_are_the_builtins_and_the_broken_candidates_with_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(known_strategy_names(entry_point_group=None)) == BUILTINS
    assert list(known_strategy_names(entry_point_group=None)) == sorted(BUILTINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _package(tmp_path, {**BROKEN, "a_good": GOOD.format(name="good")})
    # A candidate that fails validation keeps its NAME (so it may be disabled); one that fails to
    # import has none.
    assert set(known_strategy_names(packages=[package], entry_point_group=None)) == {"good", *BROKEN} - {
        "import_error"}


def test_plugins_are_names_the_configuration_may_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"tg_ep_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(GOOD.format(name="external")))
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nexternal_point = {module}\nmissing = {module}_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # The plugin's NAME, and for a plugin that fails to import its entry-point name.
    assert {"external", "missing"} <= set(known_strategy_names())
    assert "external_point" not in known_strategy_names()
    config = tmp_path / "tg.toml"
    config.write_text('[strategies]\ndisabled = ["missing"]\ntested = ["external", "wavetrend"]\n')
    assert load_settings(config, environ={}).strategies.tested == ("external", "wavetrend")
    config.write_text('[strategies]\ntested = ["externl"]\n')
    with pytest.raises(ConfigError, match=r"strategies\.tested: unknown strategy 'externl'.*did you mean 'external'"):
        load_settings(config, environ={})


def test_a_missing_plugin_package_is_reported() -> None:
    catalog = discover_strategies(packages=["tg_no_such_package", "triplegain_core.strategies.builtin"],
                                  entry_point_group=None)
    assert len(catalog.strategies) == len(BUILTINS)
    assert [(r.source, r.reason.split(":")[0]) for r in catalog.failures] == [("tg_no_such_package", "import failed")]


def test_config_overrides_are_validated_by_the_strategy_model() -> None:
    catalog = discover_strategies(entry_point_group=None, configs={
        "trend_momentum": {"min_strength": 0.9},
        "wavetrend": {"overbought": -5},
        "no_such_strategy": {"x": 1},
    })
    assert catalog.get("trend_momentum").config.min_strength == 0.9
    assert "wavetrend" not in {s.name for s in catalog.strategies}
    reasons = {r.name: r.reason for r in catalog.failures}
    assert reasons["wavetrend"].startswith("invalid config")
    assert reasons["no_such_strategy"] == "configuration names a strategy that was not loaded"


def test_disabled_strategies_are_reported_not_loaded() -> None:
    catalog = discover_strategies(entry_point_group=None, disabled=["market_making", "order_flow"])
    assert {s.name for s in catalog.strategies} == BUILTINS - {"market_making", "order_flow"}
    assert {r.name: r.reason for r in catalog.failures} == {
        "market_making": "disabled by configuration", "order_flow": "disabled by configuration"}


def test_symbols_must_be_traded_ones() -> None:
    from triplegain_core.strategies.builtin import ratio_trading

    with pytest.raises(StrategyLoadError, match="not traded"):
        load_strategy(ratio_trading, "test", traded_symbols=("BTC/USDT", "XRP/USDT"))
    assert load_strategy(ratio_trading, "test").symbols == ("XRP/BTC",)


def _candle_strategy(**extra: object) -> SimpleNamespace:
    class Config(BaseModel):
        timeframe: str = "1m"

    def generate_signal(snapshot: object, config: object, state: object) -> None:
        return None

    fields = {"NAME": "probe", "VERSION": "1", "SYMBOLS": ("XRP/USDT",), "Config": Config,
              "generate_signal": generate_signal, "READS": frozenset({"candles"})}
    return SimpleNamespace(**(fields | extra))


def test_signal_candidates_are_taken_from_candle_strategies_with_a_timeframe() -> None:
    def candidates(candles: object, first: int, config: object) -> np.ndarray:
        return np.ones(0, dtype=bool)

    assert load_strategy(_candle_strategy(SIGNAL_CANDIDATES=candidates), "test").candidates is candidates
    assert load_strategy(_candle_strategy(), "test").candidates is None
    with pytest.raises(StrategyLoadError, match="SIGNAL_CANDIDATES is not callable"):
        load_strategy(_candle_strategy(SIGNAL_CANDIDATES=3), "test")
    with pytest.raises(StrategyLoadError, match=r"needs READS = \{'candles'\}.*got READS \['books', 'candles'\]"):
        load_strategy(_candle_strategy(SIGNAL_CANDIDATES=candidates, READS=frozenset({"candles", "books"})), "test")

    class FiveMinutes(BaseModel):
        timeframe: str = "5m"

    class NoTimeframe(BaseModel):
        window: int = 20

    assert load_strategy(_candle_strategy(SIGNAL_CANDIDATES=candidates, Config=FiveMinutes), "test").candidates
    with pytest.raises(StrategyLoadError, match="timeframe None"):
        load_strategy(_candle_strategy(SIGNAL_CANDIDATES=candidates, Config=NoTimeframe), "test")
