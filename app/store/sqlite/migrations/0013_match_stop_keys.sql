-- Block purging (issue 13): blocking keys shared by more offers than their kind's cap (app.domain.matching.blocking
-- max_block) make no candidates. A key over its cap is recorded here once and for all, so a write reads a stopped
-- key's block never again (at a million products "eau de" or "j'adore" held tens of thousands of offers, and every
-- new offer gathered all of them as candidates). Derived from match_keys like it, so not replicated; emptied with
-- the rest of the index when the model changes. A stopped key stays stopped when offers leave its block (until the
-- index is rebuilt), which is the one way the store can differ from the whole-set reference.
CREATE TABLE match_stop_keys (
    k INTEGER PRIMARY KEY
);
