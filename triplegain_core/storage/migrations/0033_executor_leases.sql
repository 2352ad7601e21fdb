-- Who runs each executor account set (triplegain_core.storage.executor_lease). The exclusion
-- itself is a PostgreSQL advisory lock held by the executor's lease connection, which frees
-- itself when that connection dies (a SIGKILLed executor); this row only says who took it last,
-- for the one-line answer a second executor prints.

CREATE TABLE executor_leases (
    name   text        PRIMARY KEY,
    host   text        NOT NULL,
    pid    integer     NOT NULL,
    since  timestamptz NOT NULL
);
