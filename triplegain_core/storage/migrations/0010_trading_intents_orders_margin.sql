-- Trading v2: trade intents, risk adjustments and leverage, order states and their history,
-- loans of leveraged positions, trailing stops, invalidation and holding limits.
-- Columns added with defaults, so rows written before this migration stay valid.

CREATE TABLE trade_intents (
    intent_id      text             NOT NULL,
    account        text             NOT NULL,
    source         text             NOT NULL,
    strategy       text             NOT NULL,
    tested         boolean          NOT NULL,
    symbol         text             NOT NULL,
    time           timestamptz      NOT NULL,
    action         text             NOT NULL,
    -- As proposed: may be NaN, infinite or on the wrong side (the risk check says why).
    entry          double precision NOT NULL,
    stop_loss      double precision,
    take_profit    double precision,
    size_fraction  double precision,
    leverage       double precision,
    confidence     double precision NOT NULL,
    invalidation   double precision,
    max_holding_s  double precision,
    signal_id      text,
    PRIMARY KEY (account, intent_id)
);

ALTER TABLE risk_checks
    ADD COLUMN adjustments  text[]           NOT NULL DEFAULT '{}',
    ADD COLUMN leverage     double precision NOT NULL DEFAULT 1,
    ADD COLUMN intent_id    text,
    ADD COLUMN strategy     text,
    ADD COLUMN direction    text,
    ADD COLUMN entry        double precision,
    ADD COLUMN stop_loss    double precision,
    ADD COLUMN limit_price  double precision;

-- Orders written before states existed were all filled market orders.
ALTER TABLE orders
    ADD COLUMN state            text             NOT NULL DEFAULT 'filled',
    ADD COLUMN order_type       text             NOT NULL DEFAULT 'market',
    ADD COLUMN time_in_force    text             NOT NULL DEFAULT 'gtc',
    ADD COLUMN limit_price      double precision,
    ADD COLUMN stop_price       double precision,
    ADD COLUMN leverage         double precision NOT NULL DEFAULT 1,
    ADD COLUMN repay_loan       double precision NOT NULL DEFAULT 0,
    ADD COLUMN filled_quantity  double precision NOT NULL DEFAULT 0,
    ADD COLUMN average_price    double precision;

ALTER TABLE orders ADD CONSTRAINT orders_state_valid
    CHECK (state IN ('new', 'open', 'partially_filled', 'filled', 'cancelled', 'rejected'));

CREATE TABLE order_events (
    order_id         text             NOT NULL REFERENCES orders (order_id),
    seq              integer          NOT NULL CHECK (seq >= 0),
    time             timestamptz      NOT NULL,
    state            text             NOT NULL,
    filled_quantity  double precision NOT NULL,
    detail           text             NOT NULL,
    PRIMARY KEY (order_id, seq)
);

ALTER TABLE fills
    ADD COLUMN loan_change  double precision NOT NULL DEFAULT 0,
    ADD COLUMN loan_asset   text;

ALTER TABLE positions
    ADD COLUMN strategy           text,
    ADD COLUMN leverage           double precision NOT NULL DEFAULT 1,
    ADD COLUMN loan               double precision NOT NULL DEFAULT 0,
    ADD COLUMN loan_asset         text,
    ADD COLUMN initial_stop       double precision,
    ADD COLUMN trailing_active    boolean          NOT NULL DEFAULT false,
    ADD COLUMN best_price         double precision,
    ADD COLUMN invalidation       double precision,
    ADD COLUMN max_holding_until  timestamptz,
    ADD COLUMN realized_pnl_usdt  double precision;

ALTER TABLE portfolio_snapshots
    ADD COLUMN liabilities  jsonb NOT NULL DEFAULT '{}';

CREATE INDEX risk_checks_account_time ON risk_checks (account, time);
CREATE INDEX trade_intents_account_time ON trade_intents (account, time);
