"""User text and filters to Tantivy queries: what "relevance with prefix and typo tolerance" means here.

Every word must match (as the FTS5 search did), each in any of name, brand or description. A word matches
exactly (scored by BM25, name weighted most), or, at 5 letters or more, with one typo in the name or brand (a
constant score below that of an exact match in the name or brand, so exact matches come first). The last word is
also taken as a prefix in name and brand, since people search as they type; at 5 letters or more that prefix may
carry one typo too.
"""

from __future__ import annotations

from tantivy import FieldType, Filter, Occur, Query, Schema, TextAnalyzer, TextAnalyzerBuilder, Tokenizer

from app.domain.normalize import brand_key
from app.search.model import SearchFilters

TOKENIZER = "catalog"
MAX_WORDS = 16
TYPO_MIN_LENGTH = 5
# A one-letter prefix would expand to a large part of the vocabulary and match most of the catalog.
PREFIX_MIN_LENGTH = 2

# Field weights as the FTS5 search had them (bm25 weights 10, 1, 5 for name, description, brand).
TEXT_FIELDS: tuple[tuple[str, float], ...] = (("name", 10.0), ("brand", 5.0), ("description", 1.0))
# Inexact matches only where they help: a prefix or a typo inside a long description finds little worth
# showing and costs the most (descriptions hold most of the index's words).
PREFIX_FIELDS: tuple[str, ...] = ("name", "brand")
TYPO_FIELDS: tuple[str, ...] = ("name", "brand")
# Constant scores of the inexact matches, relative to an exact BM25 score of a few units times the weights above.
PREFIX_SCORE = 2.0
TYPO_SCORE = 1.0


def analyzer() -> TextAnalyzer:
    """The one analyzer, used to index and to split queries, so both see the same words."""
    return (
        TextAnalyzerBuilder(Tokenizer.simple())
        .filter(Filter.remove_long(40))
        .filter(Filter.lowercase())
        .filter(Filter.ascii_fold())
        .build()
    )


def text_query(schema: Schema, words: list[str]) -> Query:
    """All words must match; ``words`` are already analyzed (lower case, folded)."""
    clauses = []
    last = len(words) - 1
    for i, word in enumerate(words[:MAX_WORDS]):
        options: list[Query] = [
            Query.boost_query(Query.term_query(schema, name, word), weight) for name, weight in TEXT_FIELDS
        ]
        if i == last and len(word) >= PREFIX_MIN_LENGTH:
            options += [
                Query.const_score_query(
                    Query.fuzzy_term_query(schema, name, word, distance=0, prefix=True), PREFIX_SCORE
                )
                for name in PREFIX_FIELDS
            ]
        if len(word) >= TYPO_MIN_LENGTH:
            options += [
                Query.const_score_query(
                    Query.fuzzy_term_query(schema, name, word, distance=1, prefix=i == last), TYPO_SCORE
                )
                for name in TYPO_FIELDS
            ]
        clauses.append((Occur.Must, Query.boolean_query([(Occur.Should, q) for q in options])))
    return Query.boolean_query(clauses)


def filter_queries(schema: Schema, filters: SearchFilters) -> list[Query]:
    """Filters as queries that match or not and add nothing to the score."""
    out: list[Query] = []
    if filters.vendor:
        out.append(Query.term_query(schema, "vendor", filters.vendor))
    for name, value in (("brand_key", filters.brand), ("category_key", filters.category)):
        if value is not None:
            key = brand_key(value)
            # A value with no letters or digits has no key and matches nothing, as in the store.
            out.append(Query.term_query(schema, name, key) if key else Query.empty_query())
    if filters.min_price is not None or filters.max_price is not None:
        out.append(
            Query.range_query(
                schema, "price", FieldType.Float, lower_bound=filters.min_price, upper_bound=filters.max_price
            )
        )
    if filters.in_stock is not None:
        out.append(Query.term_query(schema, "in_stock", filters.in_stock))
    return [Query.const_score_query(q, 0.0) for q in out]


def combine(main: Query | None, extra: list[Query]) -> Query:
    if main is None and not extra:
        return Query.all_query()
    if main is not None and not extra:
        return main
    clauses = [(Occur.Must, q) for q in ([main] if main is not None else []) + extra]
    return Query.boolean_query(clauses)
