"""One validated configuration: a TOML file, overridden by environment variables.

Secrets (exchange and LLM keys) are never part of this object: they are read from the
environment by the component that needs them, so they cannot leak into logs or the UI
through a printed config.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from triplegain_core.decisions.gate import GatePolicy
from triplegain_core.errors import UserMistake, did_you_mean
from triplegain_core.llm.deliberation_config import RoundConfig
from triplegain_core.llm.models import LLMSettings, default_llm_settings, unknown_models
from triplegain_core.model.market import TRADED_SYMBOLS, Asset
from triplegain_core.risk.guards import GuardSettings
from triplegain_core.risk.rules import RiskLimits
from triplegain_core.strategies.registry import known_strategy_names

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
    ``gate_wait_s`` is resolved by ``gate_policy`` (a late answer always vetoes). Every name is
    checked against discovery's by :meth:`check_names` when the file is read.
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
        for key, names in self.named():
            if any(not name.strip() for name in names):
                raise ValueError(f"strategies.{key}: strategy names must be non-empty, got {list(names)}")
        for label, names in (("enabled", self.enabled or ()), ("disabled", self.disabled)):
            if len(set(names)) != len(names):
                raise ValueError(f"strategies.{label} names a strategy twice: {list(names)}")
        both = set(self.enabled or ()) & set(self.disabled)
        if both:
            raise ValueError(f"strategies {sorted(both)} are both enabled and disabled; "
                             "remove them from one of the two lists")
        return self

    def named(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Every key of this section that names strategies, with the names it gives."""
        return (("enabled", self.enabled or ()), ("disabled", self.disabled), ("tested", self.tested),
                ("gated", self.gated), ("config", tuple(self.config)))

    def check_names(self, known: Sequence[str]) -> None:
        """ConfigError naming the first key that names a strategy not in ``known`` (those discovery
        finds): a misspelt name would otherwise be ignored, and the strategy meant would trade."""
        for key, names in self.named():
            unknown = [name for name in names if name not in known]
            if unknown:
                raise ConfigError(f"strategies.{key}: unknown strategy {unknown[0]!r}; known strategies: "
                                  f"{', '.join(known)}{did_you_mean(unknown[0], known)}")


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
    # The stale-market guard, the volatility halt and the failure breaker.
    guards: GuardSettings = GuardSettings()
    strategies: StrategySettings = StrategySettings()
    # The models (keys from the environment only) and how a deliberation round decides.
    llm: LLMSettings = Field(default_factory=default_llm_settings)
    deliberation: RoundConfig = RoundConfig()

    @model_validator(mode="after")
    def _names_resolve(self) -> Settings:
        unknown = [symbol for symbol in self.symbols if symbol not in TRADED_SYMBOLS]
        if unknown:
            raise ValueError(f"symbols: unknown symbols {unknown}; known symbols: {', '.join(TRADED_SYMBOLS)}"
                             f"{did_you_mean(unknown[0], TRADED_SYMBOLS)}")
        negative = {asset.value: value for asset, value in self.starting_balances.items() if value < 0}
        if negative:
            raise ValueError(f"starting_balances: starting balances must be >= 0, got {negative}")
        if self.strategies.gated and self.gate_model() is None:
            raise ValueError("strategies.gated needs strategies.gate_model or an llm.fallback_chain")
        mistakes = self._unknown_models()
        if mistakes:
            raise ValueError(mistakes[0])
        return self

    def _unknown_models(self) -> list[str]:
        """One answer per configuration key that names a model not in ``llm.models``."""
        named: list[tuple[str, str | tuple[str, ...] | None]] = [
            ("strategies.gate_model", self.strategies.gate_model)]
        debate, council = self.deliberation.debate, self.deliberation.council
        if debate is not None:
            named += [("deliberation.debate.bull_model", debate.bull_model),
                      ("deliberation.debate.bear_model", debate.bear_model),
                      ("deliberation.debate.manager_model", debate.manager_model)]
        if council is not None:
            named += [("deliberation.council.chairman", council.chairman),
                      ("deliberation.council.members", council.members)]
        configured = self.llm.model_names()
        answers = (unknown_models(key, names, configured) for key, names in named)
        return [answer for answer in answers if answer is not None]

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
        raise ConfigError(f"invalid configuration ({config_path}): {_one_line(exc)}") from exc
    if settings.mode == "live" and env.get(LIVE_OPT_IN_ENV) != "yes":
        raise ConfigError(f"mode = 'live' needs the explicit opt-in {LIVE_OPT_IN_ENV}=yes")
    try:
        settings.strategies.check_names(known_strategy_names())
    except ConfigError as exc:
        raise ConfigError(f"invalid configuration ({config_path}): {exc}") from exc
    return settings


def _one_line(exc: ValidationError) -> str:
    """Every error of ``exc`` as ``key: what is wrong``, joined on one line.

    The value given is never printed: a secret pasted under the wrong key must not be echoed
    to a terminal or a log. A message of our own validators already starts with its key.
    """
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        # pydantic marks an invalid mapping key with a "[key]" step after the key itself.
        key = ".".join(str(part) for part in error["loc"] if part != "[key]")
        context = error.get("ctx") or {}
        what = str(context["error"]) if error["type"] == "value_error" and "error" in context else error["msg"]
        parts.append(what if not key or what.startswith(key) else f"{key}: {what}")
    return " ".join("; ".join(parts).split())
