-- The change feed (GET /changes): for each product, per changelog partition, the last position at which the product
-- changed, and whether it is gone. Triggers on `products` write it in the same transaction as the change, so no write
-- path can forget it. The position is what `feed_control` says while the changelog applier of the kafka runtime
-- applies a message (part 'u<partition>' / 'v<partition>', pos = offset + 1, at = the message's timestamp: the same
-- on every node), else this file's own change_seq (part 'local', at = commit time): the embedded runtime, and writes
-- a kafka node makes outside the changelog. Derived and local: not replicated.

CREATE TABLE feed (
    product_id TEXT NOT NULL,
    part       TEXT NOT NULL,
    pos        INTEGER NOT NULL,
    at         REAL NOT NULL,       -- Unix seconds: orders the partitions' changes among themselves
    deleted    INTEGER NOT NULL,
    PRIMARY KEY (product_id, part)
) WITHOUT ROWID;
CREATE INDEX feed_pos ON feed (part, pos);
CREATE INDEX feed_deleted ON feed (deleted, at) WHERE deleted = 1;

-- One row: the changelog position being applied (all NULL outside the applier).
CREATE TABLE feed_control (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    part TEXT,
    pos  INTEGER,
    at   REAL
);
INSERT INTO feed_control (id) VALUES (1);

-- Per part, the highest position whose deletions were pruned (CATALOG_CHANGES_RETENTION_S): an older token is 410.
CREATE TABLE feed_floor (
    part TEXT PRIMARY KEY,
    pos  INTEGER NOT NULL
) WITHOUT ROWID;

-- A random number naming this file's 'local' positions: a token from another file (or one deleted and created
-- again, whose change_seq restarted) is refused instead of skipping changes.
INSERT OR IGNORE INTO meta (key, value) VALUES ('feed_epoch', abs(random()));

CREATE TRIGGER feed_product_insert AFTER INSERT ON products BEGIN
    INSERT INTO feed (product_id, part, pos, at, deleted)
    SELECT NEW.id, coalesce(c.part, 'local'), coalesce(c.pos, NEW.change_seq),
           coalesce(c.at, (julianday('now') - 2440587.5) * 86400.0), 0
    FROM feed_control c WHERE c.id = 1
    ON CONFLICT (product_id, part) DO UPDATE SET
        at = CASE WHEN excluded.pos >= feed.pos THEN excluded.at ELSE feed.at END,
        pos = max(feed.pos, excluded.pos), deleted = 0;
END;

CREATE TRIGGER feed_product_update AFTER UPDATE OF etag ON products WHEN NEW.etag IS NOT OLD.etag BEGIN
    INSERT INTO feed (product_id, part, pos, at, deleted)
    SELECT NEW.id, coalesce(c.part, 'local'), coalesce(c.pos, NEW.change_seq),
           coalesce(c.at, (julianday('now') - 2440587.5) * 86400.0), 0
    FROM feed_control c WHERE c.id = 1
    ON CONFLICT (product_id, part) DO UPDATE SET
        at = CASE WHEN excluded.pos >= feed.pos THEN excluded.at ELSE feed.at END,
        pos = max(feed.pos, excluded.pos), deleted = 0;
END;

-- A removal takes a sequence number of its own: the last one may already be in a client's token.
CREATE TRIGGER feed_product_delete AFTER DELETE ON products BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'change_seq';
    INSERT INTO feed (product_id, part, pos, at, deleted)
    SELECT OLD.id, coalesce(c.part, 'local'),
           coalesce(c.pos, (SELECT value FROM meta WHERE key = 'change_seq')),
           coalesce(c.at, (julianday('now') - 2440587.5) * 86400.0), 1
    FROM feed_control c WHERE c.id = 1
    ON CONFLICT (product_id, part) DO UPDATE SET
        at = CASE WHEN excluded.pos >= feed.pos THEN excluded.at ELSE feed.at END,
        pos = max(feed.pos, excluded.pos), deleted = 1;
END;

-- A catalog that existed before the feed: its products are in it from the start, at their own change_seq.
INSERT INTO feed (product_id, part, pos, at, deleted)
SELECT id, 'local', change_seq, (julianday('now') - 2440587.5) * 86400.0, 0 FROM products;
