-- Catalog syncs a node of the distributed runtime applied from the changelog, so an update read again (delivery is
-- at least once: a redelivery after a crash, the job replaying after a restart) changes nothing: a finished sync is
-- not recorded twice, a page already counted is not counted again. Local to the node: not replicated.
CREATE TABLE applied_syncs (
    sync_id   TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL,
    last_page INTEGER,                    -- the highest page number applied (NULL: none yet)
    finished  INTEGER NOT NULL DEFAULT 0,
    at        TEXT NOT NULL               -- last change, ISO-8601: the oldest finished ones are dropped first
);
CREATE INDEX applied_syncs_finished_at ON applied_syncs (finished, at);
