-- Change capture for the PostgreSQL replica (SymmetricDS style). The triggers that fill repl_outbox are generated
-- from the tables' columns (app/adapters/sqlite/capture.py) and only installed when replication is enabled; these
-- static tables exist either way and stay empty without it.

-- AUTOINCREMENT, not a plain rowid: the outbox is emptied as PostgreSQL acknowledges it, and a plain rowid would then
-- restart at 1, below the watermark PostgreSQL holds, and those changes would be taken for already sent.
CREATE TABLE repl_outbox (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl  TEXT NOT NULL,
    pk   TEXT NOT NULL,          -- JSON array of the primary key values
    op   TEXT NOT NULL,          -- 'U' (full row image, insert or update) or 'D' (tombstone)
    row  TEXT,                   -- JSON object of the replicated columns; NULL for 'D'
    at   REAL NOT NULL           -- capture time, Unix seconds
);

-- One row. Triggers cannot see TEMP tables, so a loader that must not be captured (the initial load from
-- PostgreSQL) sets suppress = 1 and back to 0 inside its own write transaction; writers are serialised, so no
-- other transaction ever sees it set.
CREATE TABLE repl_control (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    suppress INTEGER NOT NULL DEFAULT 0
);
INSERT INTO repl_control (id, suppress) VALUES (1, 0);

-- The pusher's last known state, so every process on this file (the API when `catalog sync run` pushes) can show
-- it on /ready and /metrics.
CREATE TABLE repl_status (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    watermark     INTEGER NOT NULL DEFAULT 0,
    pushed_total  INTEGER NOT NULL DEFAULT 0,
    last_push_at  REAL,
    last_error    TEXT,
    last_error_at REAL,
    blocked       TEXT       -- JSON of the row PostgreSQL rejected, while the push is stopped on it
);
INSERT INTO repl_status (id) VALUES (1);
