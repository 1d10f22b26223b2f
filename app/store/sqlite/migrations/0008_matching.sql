-- Unification beyond identifiers (issue 10). The first three tables are derived from the offers and rebuilt when
-- the matcher's model changes (meta 'match_model'), so they are not replicated; match_overrides is what people
-- decided and is replicated like any other change.

-- The blocking index: a 64-bit hash of each blocking key of each offer (offers.rowid). An offer's candidates are
-- the offers of other vendors under any of its keys; the vendor in the key lets a lookup skip the vendor's own.
CREATE TABLE match_keys (
    k         INTEGER NOT NULL,
    vendor_id TEXT NOT NULL,
    offer     INTEGER NOT NULL,
    PRIMARY KEY (k, vendor_id, offer)
) WITHOUT ROWID;
CREATE INDEX match_keys_offer ON match_keys (offer);

-- Scored pairs at or above the merge threshold (a < b, offers' rowids); a function of the two offers alone.
CREATE TABLE match_edges (
    a       INTEGER NOT NULL,
    b       INTEGER NOT NULL,
    score   REAL NOT NULL,
    reasons TEXT NOT NULL, -- JSON array of the matcher's reasons
    PRIMARY KEY (a, b)
) WITHOUT ROWID;
CREATE INDEX match_edges_b ON match_edges (b);

-- Why an offer is in its product, where the offer alone does not say it (see app.domain.matching.explain).
CREATE TABLE match_why (
    offer INTEGER PRIMARY KEY,
    why   TEXT NOT NULL -- JSON object, the product detail's offers[].match
);

-- People's decisions: 'split' takes the offer out of any product (other_* empty); 'pin' keeps two offers together
-- (stored once, the smaller offer key first). Keyed by vendor ids, not rowids: they outlive the offers' rows and
-- every node and PostgreSQL name offers so.
CREATE TABLE match_overrides (
    vendor_id         TEXT NOT NULL,
    vendor_product_id TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('split', 'pin')),
    other_vendor_id   TEXT NOT NULL DEFAULT '',
    other_product_id  TEXT NOT NULL DEFAULT '',
    created_at        TEXT NOT NULL,
    PRIMARY KEY (vendor_id, vendor_product_id, kind, other_vendor_id, other_product_id)
) WITHOUT ROWID;

CREATE INDEX offers_gtin ON offers (gtin) WHERE gtin IS NOT NULL;
INSERT OR IGNORE INTO meta (key, value) VALUES ('match_model', 0);
