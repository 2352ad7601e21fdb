-- Backtests: each run with what defines it (its configuration and data, both hashed) and what
-- it gave (every account's and baseline's scorecard, trades and equity), so that any run can be
-- compared with another and reproduced from what is stored (`triplegain backtest --rerun RUN_ID`).

CREATE TABLE backtest_runs (
    run_id          text        PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Where the candles came from: the database (symbols and range) or files (path and symbol each).
    source          jsonb       NOT NULL,
    config          jsonb       NOT NULL,
    config_hash     text        NOT NULL,
    data_hash       text        NOT NULL,
    -- The sha256 of every fill: two runs of the same configuration and data have the same.
    trades_hash     text        NOT NULL,
    candles         bigint      NOT NULL CHECK (candles > 0),
    first_candle    timestamptz NOT NULL,
    last_candle     timestamptz NOT NULL,
    seconds         double precision NOT NULL,
    -- The run this one reproduced, if any.
    reproduces      text        REFERENCES backtest_runs (run_id),
    -- The best trading account's statistics: Sharpe interval, deflated Sharpe, PBO, Monte Carlo.
    robustness      jsonb       NOT NULL DEFAULT '{}'
);

CREATE TABLE backtest_accounts (
    run_id           text        NOT NULL REFERENCES backtest_runs (run_id) ON DELETE CASCADE,
    account          text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('technical', 'strategy', 'model', 'baseline')),
    rank             integer     NOT NULL CHECK (rank >= 1),
    return_pct       double precision,
    max_drawdown_pct double precision NOT NULL,
    sharpe           double precision,
    sortino          double precision,
    trades           integer     NOT NULL,
    win_rate         double precision,
    expectancy_usdt  double precision,
    exposure         double precision NOT NULL,
    fees_usdt        double precision NOT NULL,
    end_equity_usdt  double precision,
    PRIMARY KEY (run_id, account)
);

-- Each account's closed trades grouped by the market regime at their entry (5m detector label).
CREATE TABLE backtest_regimes (
    run_id           text        NOT NULL REFERENCES backtest_runs (run_id) ON DELETE CASCADE,
    account          text        NOT NULL,
    regime           text        NOT NULL,
    trades           integer     NOT NULL CHECK (trades > 0),
    win_rate         double precision NOT NULL,
    expectancy_usdt  double precision,
    pnl_usdt         double precision NOT NULL,
    PRIMARY KEY (run_id, account, regime)
);

CREATE TABLE backtest_trades (
    run_id             text        NOT NULL REFERENCES backtest_runs (run_id) ON DELETE CASCADE,
    account            text        NOT NULL,
    position_id        text        NOT NULL,
    symbol             text        NOT NULL,
    direction          text        NOT NULL,
    quantity           double precision NOT NULL,
    opened_at          timestamptz NOT NULL,
    entry_price        double precision NOT NULL,
    closed_at          timestamptz,
    exit_price         double precision,
    exit_reason        text,
    realized_pnl       double precision NOT NULL,
    realized_pnl_usdt  double precision,
    fees               double precision NOT NULL,
    PRIMARY KEY (run_id, account, position_id)
);

-- Equity sampled hourly (and at the last moment): a year of minutes for every account would be
-- millions of rows; the scorecards were computed on the full minute curve.
CREATE TABLE backtest_equity (
    run_id       text        NOT NULL REFERENCES backtest_runs (run_id) ON DELETE CASCADE,
    account      text        NOT NULL,
    time         timestamptz NOT NULL,
    equity_usdt  double precision NOT NULL,
    PRIMARY KEY (run_id, account, time)
);
