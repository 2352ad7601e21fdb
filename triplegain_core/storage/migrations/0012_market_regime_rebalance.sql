-- The market regime per symbol and timeframe, and the rebalance plans recommended per account
-- (Dagster assets `market_regime` and `rebalance_plan`). Both are keyed on what they describe
-- (the candle a regime was read at, the snapshot a plan was made for), so a rerun overwrites
-- rather than duplicates.

CREATE TABLE market_regimes (
    symbol                 text             NOT NULL,
    timeframe              text             NOT NULL,
    time                   timestamptz      NOT NULL,  -- open time of the candle it was read at
    close                  double precision NOT NULL,
    regime                 text             NOT NULL CHECK (regime IN ('bull', 'bear', 'sideways')),
    score                  double precision NOT NULL CHECK (score BETWEEN -1 AND 1),
    volatility             text             NOT NULL
        CHECK (volatility IN ('low', 'normal', 'high', 'extreme', 'unknown')),
    volatility_percentile  double precision CHECK (volatility_percentile BETWEEN 0 AND 1),
    natr                   double precision NOT NULL,
    components             jsonb            NOT NULL,
    note                   text,
    computed_at            timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, time)
);

CREATE TABLE rebalance_plans (
    account            text             NOT NULL,
    snapshot_time      timestamptz      NOT NULL,  -- the portfolio snapshot it was made for
    created_at         timestamptz      NOT NULL DEFAULT now(),
    regime             text,
    previous_regime    text,
    prices             jsonb            NOT NULL,
    reference_prices   jsonb            NOT NULL,
    quote_source       text             NOT NULL CHECK (quote_source IN ('book', 'last_price', 'none')),
    plan               jsonb            NOT NULL,  -- the RebalancePlan, as its JSON dump
    cycles             jsonb            NOT NULL,  -- both triangular cycles, or []
    has_trades         boolean          NOT NULL,  -- trades to target recommended
    equity_usdt        double precision NOT NULL,
    fees_usdt          double precision NOT NULL,
    PRIMARY KEY (account, snapshot_time)
);
