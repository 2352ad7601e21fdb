"""Running named great-expectations rules over a pandas frame, counting what each rejects.

Each :class:`Rule` is one expectation with a name and a meaning; :func:`validate_frame` runs
them as one ``ExpectationSuite`` on an ephemeral context (nothing is written to disk) and
returns, per rule, how many rows (or distinct keys) failed and the first of those rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import pandas as pd

from triplegain_core.reporting.reports import markdown_table

EXAMPLES = 5  # failing rows of each rule shown in a check's metadata


class Severity(StrEnum):
    """How bad a failure of a rule is: errors block what follows, warnings are only seen."""

    ERROR = "error"
    WARN = "warn"


@dataclass(frozen=True)
class Rule:
    """One expectation on a frame: a great-expectations class name and its arguments.

    ``distinct`` counts the distinct values of those columns among the failing rows instead of
    the rows (two candles in one minute are one duplicate bucket); ``columns`` are shown in
    the examples.
    """

    key: str
    meaning: str
    expectation: str
    arguments: Mapping[str, object] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    severity: Severity = Severity.ERROR
    distinct: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleOutcome:
    """How many rows (or keys) failed a rule, and the first failing rows."""

    rule: Rule
    count: int
    examples: pd.DataFrame

    def markdown(self) -> str:
        """The rule, its count and its examples as markdown."""
        table = markdown_table(list(self.examples.columns),
                               list(self.examples.itertuples(index=False, name=None)))
        return f"**{self.rule.key}** ({self.rule.meaning}): {self.count}\n\n{table}"


def validate_frame(name: str, frame: pd.DataFrame, rules: Sequence[Rule]) -> list[RuleOutcome]:
    """Validate ``frame`` (a unique index) against ``rules`` with great-expectations."""
    # Imported here: it takes seconds, and every Dagster step process loads the definitions.
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas(name).add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe(name)
             .get_batch(batch_parameters={"dataframe": frame}))
    suite = gx.ExpectationSuite(name=name)
    by_key = {rule.key: rule for rule in rules}
    for rule in rules:
        expectation = getattr(gx.expectations, rule.expectation)(**rule.arguments)
        expectation.meta = {"rule": rule.key}  # ephemeral suites give no ids to match on
        suite.add_expectation(expectation)
    validation = batch.validate(suite, result_format="COMPLETE")
    outcomes: dict[str, RuleOutcome] = {}
    for result in validation.results:
        config = result.expectation_config
        assert config is not None, "a validation result names its expectation"
        rule = by_key[config.meta["rule"]]
        if result.exception_info.get("raised_exception"):
            raise RuntimeError(f"{name}: expectation {rule.key} could not run: "
                               f"{result.exception_info.get('exception_message')}")
        failing = frame.loc[result.result.get("unexpected_index_list") or []]
        count = (len(failing.drop_duplicates(list(rule.distinct))) if rule.distinct
                 else int(result.result.get("unexpected_count") or 0))
        outcomes[rule.key] = RuleOutcome(rule, count, failing[list(rule.columns)].head(EXAMPLES))
    return [outcomes[rule.key] for rule in rules]
