"""Asset group names: one per concern folder of ``triplegain_dagster/defs``, spelled like the folder."""

MARKET_DATA = "market_data"
HISTORY = "history"
FEATURES = "features"
PORTFOLIO = "portfolio"
DELIBERATION = "deliberation"
REPORTS = "reports"
BACKTESTS = "backtests"
