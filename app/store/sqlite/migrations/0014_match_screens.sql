-- Candidate screening (issue 13): each indexed offer's ``app.domain.matching.screen.Screen`` (tier, edition, size,
-- measure and brand facts, a few dozen bytes), so a write refuses most of a new offer's candidate pairs without
-- reading and profiling their records. Derived from the offers like match_keys, so not replicated; written and
-- dropped with an offer's keys, emptied with the rest of the index when the model changes.
CREATE TABLE match_screens (
    offer INTEGER PRIMARY KEY,
    screen TEXT NOT NULL
);
