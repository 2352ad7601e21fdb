"""One validated configuration: a TOML file, overridden by environment variables.

Secrets (exchange and LLM keys) are never part of this object: they are read from the
environment by the component that needs them, so they cannot leak into logs or the UI
through a printed config.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from triplegain_core.decisions.gate import GatePolicy
from triplegain_core.errors import UserMistake
from triplegain_core.llm.deliberation_config import RoundConfig
from triplegain_core.llm.models import LLMSettings, default_llm_settings
from triplegain_core.model.market import TRADED_SYMBOLS, Asset
from triplegain_core.risk.rules import RiskLimits

KRAKEN_WS_V2_URL = "wss://ws.kraken.com/v2"
CONFIG_FILE_ENV = "TRIPLEGAIN_CONFIG"
DEFAULT_CONFIG_FILE = "triplegain.toml"
LIVE_OPT_IN_ENV = "TRIPLEGAIN_I_ACCEPT_LIVE_TRADING"

# Environment variables that override top-level settings, and the field each sets.
ENV_OVERRIDES = {
    "TRIPLEGAIN_DATABASE_URL": "database_url",
    "TRIPLEGAIN_REDIS_URL": "redis_url",
    "TRIPLEGAIN_DATA_DIR": "data_dir",
    "TRIPLEGAIN_WS_URL": "ws_url",
    "TRIPLEGAIN_REST_URL": "rest_url",
    "TRIPLEGAIN_ACCOUNT": "account",
    "TRIPLEGAIN_MODE": "mode",
}


class ConfigError(UserMistake, ValueError):
    """The configuration file or environment is invalid; the message says where and why."""


class StrategySettings(BaseModel):
    """Which strategies the executor runs, each on its own paper account, and their configs.

    ``enabled`` None runs every strategy discovery loads; a tuple runs only those named.
    ``disabled`` names strategies never to run. ``config`` maps a strategy name to overrides
    of its own Config model (validated by it at load). ``tested`` names strategies with a
    track record: only those may get leverage. ``technical_agent`` keeps the TechnicalAgent
    trading the base account (``Settings.account``); the strategy accounts are named
    ``<account>:<strategy>``. ``gated`` strategies pass each signal through the confirmation
    gate first: the LLM ``gate_model`` (default: the first of the LLM fallback chain) may only
    confirm or veto it, off the trading loop; a gate that fails or answers after
    ``gate_wait_s`` is resolved by ``gate_policy`` (a late answer always vetoes).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: tuple[str, ...] | None = None
    disabled: tuple[str, ...] = ()
    config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tested: tuple[str, ...] = ()
    technical_agent: bool = True
    gated: tuple[str, ...] = ()
    gate_model: str | None = None
    gate_policy: GatePolicy = GatePolicy.VETO
    gate_wait_s: float = Field(default=15.0, gt=0.0, le=300.0)

    @model_validator(mode="after")
    def _consistent_names(self) -> StrategySettings:
        named = [*(self.enabled or ()), *self.disabled, *self.config, *self.tested]
        if any(not name.strip() for name in named):
            raise ValueError("strategy names must be non-empty")
        for label, names in (("enabled", self.enabled or ()), ("disabled", self.disabled)):
            if len(set(names)) != len(names):
                raise ValueError(f"strategies.{label} names a strategy twice: {list(names)}")
        both = set(self.enabled or ()) & set(self.disabled)
        if both:
            raise ValueError(f"strategies {sorted(both)} are both enabled and disabled")
        return self


class Settings(BaseModel):
    """Everything a TripleGain process needs to know, with safe defaults (paper trading)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".triplegain")
    ws_url: str = KRAKEN_WS_V2_URL
    # The exchange's REST host for gap repair (ccxt's default, Kraken's own, when unset),
    # and the spacing of its calls (unset: ccxt's, which keeps within Kraken's public limit).
    rest_url: str | None = None
    rest_rate_limit_ms: int | None = Field(default=None, ge=0)
    symbols: tuple[str, ...] = TRADED_SYMBOLS
    account: str = Field(default="paper", min_length=1)
    mode: Literal["paper", "live"] = "paper"
    starting_balances: dict[Asset, float] = Field(
        default_factory=lambda: {Asset.USDT: 1000.0, Asset.XRP: 500.0, Asset.BTC: 0.0}
    )
    fee_rate: float = Field(default=0.001, ge=0.0, le=0.01)
    slippage: float = Field(default=0.0005, ge=0.0, le=0.01)
    loop_interval_s: float = Field(default=0.1, gt=0.0, le=5.0)
    # Trades per database transaction at most: under a backlog (catch-up after a restart, a
    # replay) full batches amortise the commit; a live stream is cut by write_interval_s.
    write_batch_size: int = Field(default=5000, ge=1)
    write_interval_s: float = Field(default=0.25, gt=0.0)
    risk: RiskLimits = RiskLimits()
    strategies: StrategySettings = StrategySettings()
    # The models (keys from the environment only) and how a deliberation round decides.
    llm: LLMSettings = Field(default_factory=default_llm_settings)
    deliberation: RoundConfig = RoundConfig()

    @model_validator(mode="after")
    def _known_symbols(self) -> Settings:
        unknown = set(self.symbols) - set(TRADED_SYMBOLS)
        if unknown:
            raise ValueError(f"unknown symbols {sorted(unknown)}; known: {list(TRADED_SYMBOLS)}")
        if any(value < 0 for value in self.starting_balances.values()):
            raise ValueError("starting balances must be >= 0")
        gate_model = self.gate_model()
        if self.strategies.gated and gate_model is None:
            raise ValueError("strategies.gated needs strategies.gate_model or an llm.fallback_chain")
        if gate_model is not None and gate_model not in {m.name for m in self.llm.models}:
            raise ValueError(f"strategies.gate_model {gate_model!r} is not a configured llm model")
        return self

    def gate_model(self) -> str | None:
        """The model that confirms or vetoes gated signals (None: no gate configured)."""
        if not self.strategies.gated:
            return None
        return self.strategies.gate_model or next(iter(self.llm.fallback_chain), None)


def load_settings(
    path: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: object
) -> Settings:
    """Read the config file (if any), apply environment overrides, then explicit overrides.

    The file is ``path``, else ``$TRIPLEGAIN_CONFIG``, else ``./triplegain.toml`` when present.
    """
    env = os.environ if environ is None else environ
    explicit = path is not None or CONFIG_FILE_ENV in env
    config_path = Path(path or env.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
    values: dict[str, object] = {}
    if config_path.exists():
        try:
            values.update(tomllib.loads(config_path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from exc
    elif explicit:
        raise ConfigError(f"config file {config_path} does not exist")
    for var, field in ENV_OVERRIDES.items():
        if env.get(var):
            values[field] = env[var]
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration ({config_path}): {exc}") from exc
    if settings.mode == "live" and env.get(LIVE_OPT_IN_ENV) != "yes":
        raise ConfigError(f"mode = 'live' needs the explicit opt-in {LIVE_OPT_IN_ENV}=yes")
    return settings
