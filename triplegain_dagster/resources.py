"""Dagster resources: the two meeting places of TripleGain (PostgreSQL and Redis), the
exchange's REST API, and the data-quality settings.

With no configuration the database and Redis resolve like every other TripleGain process:
``TRIPLEGAIN_*`` environment variables and the config file through ``load_settings``, else the
embedded servers under the data directory. Connection URLs may hold passwords: leave the fields unset (the
environment is read at run time) or pass ``dagster.EnvVar("TRIPLEGAIN_DATABASE_URL")``, whose
value the UI never shows, rather than a literal URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import redis
from dagster import ConfigurableResource
from pydantic import Field

from triplegain_core.analysis.symbol_regime import DEFAULT_REGIME_TIMEFRAME
from triplegain_core.config import Settings, load_settings
from triplegain_core.llm.answer_cache import CacheMode
from triplegain_core.model.market import Asset
from triplegain_core.portfolio.rebalancing import RebalanceConfig, RebalancingAgent
from triplegain_core.storage import endpoints
from triplegain_core.storage.migrate import migrate

if TYPE_CHECKING:
    from triplegain_core.adapters.kraken.rest import ExchangeRestConfig, RestMarketData

# URLs already migrated by this process: migrating is idempotent but takes a lock and a round
# trip, so each run worker does it once per database rather than once per asset.
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def _settings(database_url: str | None, redis_url: str | None, data_dir: str | None) -> Settings:
    return load_settings(database_url=database_url, redis_url=redis_url,
                         data_dir=Path(data_dir) if data_dir else None)


class PostgresResource(ConfigurableResource):
    """The TripleGain PostgreSQL database, migrated to the current schema before first use."""

    database_url: str | None = Field(
        default=None,
        description="Connection URL; unset: TRIPLEGAIN_DATABASE_URL, config file, embedded server.",
    )
    data_dir: str | None = Field(
        default=None,
        description="Data directory (embedded servers, reports); unset: TRIPLEGAIN_DATA_DIR.",
    )

    def settings(self) -> Settings:
        """The TripleGain settings with this resource's fields as overrides."""
        return _settings(self.database_url, None, self.data_dir)

    def url(self) -> str:
        """The database URL (starting the embedded server if needed), schema migrated."""
        url = endpoints.database_url(self.settings())
        with _migrate_lock:
            if url not in _migrated:
                migrate(url)
                _migrated.add(url)
        return url

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection, closed on exit."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            yield conn


class RedisResource(ConfigurableResource):
    """The TripleGain Redis (hot state and decision streams)."""

    redis_url: str | None = Field(
        default=None,
        description="Redis URL; unset: TRIPLEGAIN_REDIS_URL, config file, embedded server.",
    )
    data_dir: str | None = Field(
        default=None,
        description="Data directory of the embedded server; unset: TRIPLEGAIN_DATA_DIR.",
    )

    def url(self) -> str:
        """The Redis URL, starting the embedded server if needed."""
        return endpoints.redis_url(_settings(None, self.redis_url, self.data_dir))

    def client(self) -> redis.Redis:
        """A client for the configured (or embedded) Redis; the caller closes it."""
        return redis.Redis.from_url(self.url())

    @contextmanager
    def connected(self) -> Iterator[redis.Redis]:
        """A client, closed on exit."""
        client = self.client()
        try:
            yield client
        finally:
            client.close()


class ExchangeResource(ConfigurableResource):
    """The exchange's public REST API through ccxt (Kraken by default).

    ``base_url`` points ccxt at another host (the replay exchange's REST stand-in in tests and
    demos). API keys are never fields: they are read from the environment variables named by
    ``api_key_env`` / ``api_secret_env`` when a client is made, so neither the UI nor a log
    ever shows them (public market data needs none).
    """

    exchange_id: str = Field(default="kraken", description="ccxt exchange id.")
    base_url: str | None = Field(
        default=None, description="REST base URL override; unset: the exchange's own host.",
    )
    rate_limit_ms: int | None = Field(
        default=None, description="Minimum spacing of calls (ccxt rateLimit); unset: ccxt's.",
    )
    page_size: int = Field(default=1000, description="Trades per REST page (Kraken: <= 1000).")
    max_retries: int = Field(default=6, description="Retries of a rate-limited or failed call.")
    backoff_s: float = Field(default=1.0, description="First retry delay, doubled each retry.")
    max_backoff_s: float = Field(default=60.0, description="Longest retry delay.")
    api_key_env: str = Field(default="TRIPLEGAIN_EXCHANGE_API_KEY",
                             description="Environment variable holding the API key, if any.")
    api_secret_env: str = Field(default="TRIPLEGAIN_EXCHANGE_API_SECRET",
                                description="Environment variable holding the API secret.")

    def rest_config(self) -> ExchangeRestConfig:
        """The validated adapter configuration of these fields."""
        # Imported on use: ccxt takes a while to import, and only the backfill steps need it.
        from triplegain_core.adapters.kraken.rest import ExchangeRestConfig

        return ExchangeRestConfig(
            exchange_id=self.exchange_id, base_url=self.base_url,
            rate_limit_ms=self.rate_limit_ms, page_size=self.page_size,
            max_retries=self.max_retries, backoff_s=self.backoff_s,
            max_backoff_s=self.max_backoff_s, api_key_env=self.api_key_env,
            api_secret_env=self.api_secret_env,
        )

    def client(self) -> RestMarketData:
        """A new REST client (async); use it as ``async with`` so its session is closed."""
        from triplegain_core.adapters.kraken.rest import RestMarketData

        return RestMarketData(self.rest_config())


class DataQualityResource(ConfigurableResource):
    """Thresholds of the market-data quality checks."""

    window_days: float = Field(
        default=7.0, description="Rows checked: those within this many days of the latest one.",
    )
    max_staleness_minutes: float = Field(
        default=15.0, description="The live stream is stale when its latest row is older.",
    )
    now: str | None = Field(
        default=None,
        description="ISO 8601 time to judge freshness at (replays, tests); unset: the clock.",
    )

    def current_time(self) -> datetime:
        """The moment freshness is judged at, UTC-aware."""
        if self.now is None:
            return datetime.now(UTC)
        moment = datetime.fromisoformat(self.now)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _equal_thirds() -> dict[str, float]:
    return {asset.value: 1.0 / len(Asset) for asset in Asset}


class RebalancingResource(ConfigurableResource):
    """The RebalancingAgent's settings, shared by ``rebalance_plan`` and its drift sensor so
    that the sensor requests a plan exactly when the plan finds a trigger."""

    target: dict[str, float] = Field(
        default_factory=_equal_thirds, description="Target share per asset (BTC, USDT, XRP).",
    )
    drift_threshold: float = Field(
        default=0.10, description="Drift trigger: |share - target| above this (0.10 = 10 points).",
    )
    max_asset_fraction: float = Field(
        default=0.60, description="Concentration trigger: one asset above this share.",
    )
    gain_threshold: float = Field(
        default=0.20, description="Gain trigger: BTC or XRP up more than this since the last rebalance.",
    )
    min_trade_usdt: float = Field(default=5.0, description="Smaller trades are not recommended.")
    regime_symbol: str = Field(
        default="BTC/USDT", description="Whose regime is the market's (the regime-change trigger).",
    )
    regime_timeframe: str = Field(
        default=DEFAULT_REGIME_TIMEFRAME, description="Timeframe of that regime.",
    )
    replan_after_minutes: float = Field(
        default=60.0,
        description="The sensor re-requests a plan for unchanged triggers after this long.",
    )

    def replan_after(self) -> timedelta:
        """How long the sensor waits before re-requesting a plan for unchanged triggers."""
        return timedelta(minutes=self.replan_after_minutes)

    def agent(self) -> RebalancingAgent:
        """A RebalancingAgent with these settings (fees: the paper executor's 0.1%)."""
        return RebalancingAgent(RebalanceConfig(
            target={Asset(asset): share for asset, share in self.target.items()},
            drift_threshold=self.drift_threshold, max_asset_fraction=self.max_asset_fraction,
            gain_threshold=self.gain_threshold, min_trade_usdt=self.min_trade_usdt,
        ))


class LLMResource(ConfigurableResource):
    """The language models of a deliberation round.

    The models themselves are configuration (``[llm]`` in the config file, default: the five
    of the product card); their keys are read from the environment when a client is made and are
    never fields here, so the UI cannot show them. ``cache_mode`` ``record`` keeps every answer
    by prompt hash, ``replay`` answers only from those recordings (deterministic and free).
    """

    cache_mode: str = Field(
        default="live", description="live (ask the providers), record (ask and keep), replay (recorded only).",
    )
    rate_limit_wait_s: float = Field(
        default=5.0, description="Longest wait for a model's shared (Redis) rate limit before giving up.",
    )

    def mode(self) -> CacheMode:
        """The validated cache mode."""
        return CacheMode(self.cache_mode)
