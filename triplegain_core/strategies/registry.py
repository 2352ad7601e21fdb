"""Strategy discovery and validation: every module of a package plus an entry-point group.

Each candidate is checked against the contract of :mod:`triplegain_core.strategies.interface`;
a candidate that fails to import or to validate is skipped and reported in a typed
:class:`LoadReport` with the reason, so one broken plugin never stops the others or the loop.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from triplegain_core.marketdata.snapshot import SNAPSHOT_PARTS
from triplegain_core.model.market import TIMEFRAME_US, TRADED_SYMBOLS
from triplegain_core.strategies.interface import CandidateRows, SignalGenerator, StrategyState

log = logging.getLogger(__name__)

BUILTIN_PACKAGE = "triplegain_core.strategies.builtin"
ENTRY_POINT_GROUP = "triplegain.strategies"


class StrategyLoadError(ValueError):
    """A candidate does not fulfil the strategy contract; the message says why."""


class LoadReport(BaseModel):
    """The outcome of loading one candidate: ``loaded`` or skipped with ``reason``."""

    model_config = ConfigDict(frozen=True)

    source: str
    name: str | None
    version: str | None
    loaded: bool
    reason: str


@dataclass(frozen=True, slots=True)
class LoadedStrategy:
    """A validated strategy with its resolved configuration."""

    name: str
    version: str
    symbols: tuple[str, ...]
    config: BaseModel
    generate: SignalGenerator
    source: str
    reads: frozenset[str] = SNAPSHOT_PARTS
    # The rows of a batch where it may signal (SIGNAL_CANDIDATES); None: it is asked on every row.
    candidates: CandidateRows | None = None

    def new_state(self, symbol: str) -> StrategyState:
        """Fresh state for one symbol."""
        return StrategyState(symbol=symbol)


@dataclass(frozen=True, slots=True)
class StrategyCatalog:
    """What discovery found: the strategies to run and one report per candidate."""

    strategies: tuple[LoadedStrategy, ...]
    reports: tuple[LoadReport, ...]

    @property
    def failures(self) -> tuple[LoadReport, ...]:
        """Reports of the candidates that were skipped."""
        return tuple(report for report in self.reports if not report.loaded)

    def get(self, name: str) -> LoadedStrategy:
        """The loaded strategy called ``name``; KeyError when none is."""
        for strategy in self.strategies:
            if strategy.name == name:
                return strategy
        raise KeyError(f"no loaded strategy named {name!r}")


def _required_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if info.is_required()]


def load_strategy(
    candidate: Any,
    source: str,
    traded_symbols: Iterable[str] = TRADED_SYMBOLS,
    config_override: Mapping[str, Any] | None = None,
) -> LoadedStrategy:
    """Validate ``candidate`` (a module or object) against the contract; StrategyLoadError if not.

    ``config_override`` (e.g. a section of the configuration file) is validated by the
    strategy's own Config model on top of its defaults.
    """
    attributes = ("NAME", "VERSION", "SYMBOLS", "Config", "generate_signal")
    missing = [attr for attr in attributes if not hasattr(candidate, attr)]
    if missing:
        raise StrategyLoadError(f"missing required attribute(s): {', '.join(missing)}")
    name, version, symbols = candidate.NAME, candidate.VERSION, candidate.SYMBOLS
    if not isinstance(name, str) or not name.strip():
        raise StrategyLoadError(f"NAME must be a non-empty string, got {name!r}")
    if not isinstance(version, str) or not version.strip():
        raise StrategyLoadError(f"VERSION must be a non-empty string, got {version!r}")
    if not isinstance(symbols, tuple) or not symbols or not all(isinstance(s, str) for s in symbols):
        raise StrategyLoadError(f"SYMBOLS must be a non-empty tuple of symbols, got {symbols!r}")
    traded = set(traded_symbols)
    unknown = [symbol for symbol in symbols if symbol not in traded]
    if unknown:
        raise StrategyLoadError(f"SYMBOLS {unknown} are not traded (traded: {sorted(traded)})")
    model = candidate.Config
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        raise StrategyLoadError(f"Config must be a pydantic model class, got {model!r}")
    required = _required_fields(model)
    if required:
        raise StrategyLoadError(f"Config fields without a default: {required}")
    try:
        config = model.model_validate(dict(config_override or {}))
    except ValidationError as exc:
        raise StrategyLoadError(f"invalid config: {exc.errors(include_url=False)}") from None
    generate = candidate.generate_signal
    if not callable(generate):
        raise StrategyLoadError("generate_signal is not callable")
    try:
        inspect.signature(generate).bind(None, None, None)
    except TypeError:
        raise StrategyLoadError("generate_signal must take (snapshot, config, state)") from None
    reads = getattr(candidate, "READS", SNAPSHOT_PARTS)
    if not isinstance(reads, (frozenset, set, tuple)) or not reads or not set(reads) <= SNAPSHOT_PARTS:
        raise StrategyLoadError(f"READS must be a non-empty subset of {sorted(SNAPSHOT_PARTS)}, got {reads!r}")
    candidates = getattr(candidate, "SIGNAL_CANDIDATES", None)
    if candidates is not None:
        if not callable(candidates):
            raise StrategyLoadError("SIGNAL_CANDIDATES is not callable")
        timeframe = getattr(config, "timeframe", None)
        if set(reads) != {"candles"} or timeframe not in TIMEFRAME_US:
            raise StrategyLoadError("SIGNAL_CANDIDATES needs READS = {'candles'} and a config.timeframe"
                                    f" (got READS {sorted(reads)}, timeframe {timeframe!r})")
    return LoadedStrategy(name=name, version=version, symbols=symbols, config=config, generate=generate,
                          source=source, reads=frozenset(reads), candidates=candidates)


def _package_candidates(package: str) -> list[tuple[str, Any]]:
    """(source, module-or-exception) for every module of ``package``."""
    found: list[tuple[str, Any]] = []
    try:
        root = importlib.import_module(package)
    except Exception as exc:  # a missing or broken plugin package is reported like a broken module
        return [(package, exc)]
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        source = f"{package}.{info.name}"
        try:
            found.append((source, importlib.import_module(source)))
        except Exception as exc:  # a plugin's import may fail any way; report it, keep going
            found.append((source, exc))
    return found


def _entry_point_candidates(group: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        source = f"entry point {group}:{point.name} ({point.value})"
        try:
            found.append((source, point.load()))
        except Exception as exc:  # same as above: a broken distribution must not stop discovery
            found.append((source, exc))
    return found


def known_strategy_names(
    packages: Iterable[str] = (BUILTIN_PACKAGE,), entry_point_group: str | None = ENTRY_POINT_GROUP
) -> tuple[str, ...]:
    """Sorted names the configuration may give a strategy: the NAME of every candidate that
    :func:`discover_strategies` would find, loadable or not.

    A plugin that fails to import has no NAME to read: its entry-point name stands in, so a
    configuration that names a broken plugin is not refused for it (discovery reports the plugin).
    """
    names = {getattr(candidate, "NAME", None) for package in packages
             for _, candidate in _package_candidates(package)}
    if entry_point_group:
        for point in entry_points(group=entry_point_group):
            try:
                names.add(getattr(point.load(), "NAME", None))
            except Exception:  # a broken distribution: discovery reports it when it runs
                names.add(point.name)
    return tuple(sorted(name for name in names if isinstance(name, str) and name.strip()))


def discover_strategies(
    packages: Iterable[str] = (BUILTIN_PACKAGE,),
    entry_point_group: str | None = ENTRY_POINT_GROUP,
    traded_symbols: Iterable[str] = TRADED_SYMBOLS,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    disabled: Iterable[str] = (),
) -> StrategyCatalog:
    """Load every strategy module of ``packages`` and of the entry-point group.

    Modules whose name starts with ``_`` are private helpers, not candidates. ``configs`` maps
    a strategy name to its configuration overrides; ``disabled`` names strategies not to run
    (reported as skipped). A duplicate NAME keeps the first one found and reports the other.
    """
    traded = tuple(traded_symbols)
    configs = configs or {}
    off = set(disabled)
    candidates = [c for package in packages for c in _package_candidates(package)]
    if entry_point_group:
        candidates += _entry_point_candidates(entry_point_group)
    loaded: list[LoadedStrategy] = []
    reports: list[LoadReport] = []
    for source, candidate in candidates:
        name = getattr(candidate, "NAME", None)
        version = getattr(candidate, "VERSION", None)
        name = name if isinstance(name, str) else None
        version = version if isinstance(version, str) else None
        if isinstance(candidate, BaseException):
            reason = f"import failed: {type(candidate).__name__}: {candidate}"
        elif name in off:
            reason = "disabled by configuration"
        elif name is not None and any(s.name == name for s in loaded):
            reason = f"duplicate strategy name {name!r} (already loaded)"
        else:
            try:
                strategy = load_strategy(candidate, source, traded, configs.get(name or ""))
            except StrategyLoadError as exc:
                reason = str(exc)
            except Exception as exc:  # e.g. a Config validator raising TypeError on its defaults
                reason = f"validation failed: {type(exc).__name__}: {exc}"
            else:
                loaded.append(strategy)
                reports.append(LoadReport(source=source, name=name, version=version, loaded=True, reason="loaded"))
                continue
        log.warning("strategy %s skipped: %s", source, reason)
        reports.append(LoadReport(source=source, name=name, version=version, loaded=False, reason=reason))
    unknown = set(configs) - {report.name for report in reports}
    for name in sorted(unknown):
        reports.append(LoadReport(source="configuration", name=name, version=None, loaded=False,
                                  reason="configuration names a strategy that was not loaded"))
    return StrategyCatalog(strategies=tuple(loaded), reports=tuple(reports))
