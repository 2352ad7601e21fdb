-- The kill switch and manual control: `triplegain halt [--cancel] [--flatten]`, `triplegain
-- resume` and `triplegain close POSITION`, who gave each (the OS user, or TRIPLEGAIN_OPERATOR)
-- and why. Executors apply each command once, in control_id order; the newest halt or resume
-- says whether trading is halted, across restarts.

CREATE TABLE executor_controls (
    control_id     bigserial   PRIMARY KEY,
    action         text        NOT NULL CHECK (action IN ('halt', 'resume', 'close')),
    cancel_orders  boolean     NOT NULL DEFAULT false,
    flatten        boolean     NOT NULL DEFAULT false,
    position_id    text,
    operator       text        NOT NULL,
    reason         text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((action = 'close') = (position_id IS NOT NULL)),
    CHECK (action = 'halt' OR NOT (cancel_orders OR flatten))
);
