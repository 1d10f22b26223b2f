-- Webhook deliveries seen by this node (issue 11): a delivery id answered or applied once is answered the same and
-- changes nothing again, across restarts and, in the kafka runtime, whichever node it reaches. Not replicated.
CREATE TABLE webhook_deliveries (
    vendor_id   TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    answer      TEXT,                       -- JSON {"applied", "offers"} given to the first delivery; NULL: none here
    applied     INTEGER NOT NULL DEFAULT 0, -- 1 once the change reached this store
    received_at REAL NOT NULL,              -- Unix seconds; rows older than the keep period are pruned
    PRIMARY KEY (vendor_id, delivery_id)
) WITHOUT ROWID;
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (received_at);
