"""Matching offers that are the same product when identifiers are missing (issue 10).

Pure domain code: records (``MatchRecord``), text reading, pair features, the shipped model, scoring with
reasons, blocking keys and order-independent clustering. Nothing here touches SQLite, HTTP or Kafka, and nothing
is loaded at import: the model is read on first use.

The API a store calls:

- ``blocking_keys(record)``: the keys to index an offer under and to look its candidates up by;
- ``score_many(record, candidates, threshold="merge")``: decisions for one new offer against its candidates;
- ``cluster(base_keys, edges, conflict, threshold)``: products of a connected component, with stable keys;
- ``unify_offers(offers, matcher)``: the same for a complete set, the reference for tests.
"""

from app.domain.matching.clustering import (
    NO_OVERRIDES,
    Edge,
    Group,
    OfferKey,
    OverrideChange,
    Overrides,
    candidate_edges,
    cluster,
    explain,
    unify_explained,
    unify_offers,
)
from app.domain.matching.records import MatchRecord, from_mapping, from_offer
from app.domain.matching.scoring import (
    MatchDecision,
    Matcher,
    ThresholdName,
    blocking_keys,
    default_matcher,
    score,
    score_many,
)

__all__ = [
    "NO_OVERRIDES",
    "Edge",
    "Group",
    "MatchDecision",
    "MatchRecord",
    "Matcher",
    "OfferKey",
    "OverrideChange",
    "Overrides",
    "ThresholdName",
    "blocking_keys",
    "candidate_edges",
    "cluster",
    "default_matcher",
    "explain",
    "from_mapping",
    "from_offer",
    "score",
    "score_many",
    "unify_explained",
    "unify_offers",
]
