"""Reading a record fast must not read it differently: the shortcuts of ``profile`` against their definitions."""

from __future__ import annotations

import random
import re

import pytest

from app.domain.matching import MatchRecord, default_matcher, text
from app.domain.matching.features import VARIANTS, WordEvidence, profile, swap_keys, swap_range

# Spellings the readers special-case: codes with separators, measures, decimals, hyphens, unicode, "+".
POOL = " ".join(
    (
        "sony cyber-shot DSC-W120/P 7.2MP 7.2 megapixel 64GB 128 GB 1 TB 3-pack pack of 12 #5 S8+ pro max upgrade "
        "win xp 2007 4th generation size XL blk red/black red-black nestlé ＦＵＬＬ ½ v2.0 1,5 9300 13 966193-0403 "
        "lm-af30u3 t9161ll/a yht390bk 4.0-cu 2.26ghz/4gb encore software inc the & - / . , ( ) 3 in 1 7. 2 x",
    )
).split()


def texts(count: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    lengths = (0, 1, 5, 40, 78, 79, 80, 81, 82, 83, 200, 700)
    return [" ".join(rnd.choice(POOL) for _ in range(rnd.choice(lengths))) for _ in range(count)]


@pytest.mark.parametrize("n", [1, 3, 80])
def test_leading_words_are_the_first_words_of_the_whole_text(n: int) -> None:
    for raw in texts(400, seed=n):
        folded = text.fold(raw)
        assert text.leading_words(folded, n) == text.words(folded)[:n]


def test_leading_words_cut_inside_a_decimal_reads_the_whole_text() -> None:
    # The prefix read ends inside "7.2"; the word must still be "7.2", not "7".
    n = 3
    folded = "a" * (n * 16 - 2) + " 7.2 b c d"
    assert text.leading_words(folded, n) == text.words(folded)[:n]


def test_alnum_of_folded_text_is_the_letters_and_digits() -> None:
    for raw in texts(200, seed=7):
        folded = text.fold(raw)
        assert text.alnum_folded(folded) == re.sub(r"[^0-9a-z]+", "", folded)


def test_what_profile_prepares_for_the_pair_rules_is_what_the_rules_computed() -> None:
    vocab = default_matcher().model.vocabulary
    rnd = random.Random(3)
    for title in texts(300, seed=11):
        brand = rnd.choice((None, "Sony", "Nestlé", "7-Eleven", "Apple Inc"))
        p = profile(MatchRecord(title=title, description=rnd.choice(texts(3, seed=len(title))), brand=brand), vocab)
        assert p.long_title_codes == tuple(c for c in p.title_codes if len(c) >= 4)
        assert p.code_shapes == {re.sub("[0-9]", "#", c) for c in p.title_codes if len(c) >= 4 and not c.isdigit()}
        assert p.whole_numbers == {n for n in p.attrs.numbers if n.isdigit()}
        assert {d: set(v) for d, v in p.measure_values.items()} == {
            d: {v for dd, v in p.attrs.measures if dd == d} for d, _ in p.attrs.measures
        }
        assert p.stated == tuple((name, i) for name, i in VARIANTS if p.attrs[i])
        own = set(text.words(text.fold(brand))) if brand else set()
        assert p.brand_words == own | ({p.brand} if p.brand else set())
        assert p.plain_words == p.core_words - p.brand_words - text.FILLER


def test_swap_range_is_the_range_of_the_swap_keys_evidence() -> None:
    evidence = default_matcher().model.evidence
    known = sorted({w for key in evidence.swaps for w in key.split("|")})
    rnd = random.Random(5)
    for _ in range(2000):
        # Words the evidence knows, and some it does not, on either side; disjoint, as two titles' own words are.
        words = rnd.sample(known, 12) + [f"zz{i}" for i in range(4)]
        cut = rnd.randint(0, len(words))
        only_a = frozenset(rnd.sample(words[:cut], rnd.randint(0, min(cut, 9))))
        only_b = frozenset(rnd.sample(words[cut:], rnd.randint(0, min(len(words) - cut, 9))))
        looked_up = [evidence.swaps.get(k, 0.0) for k in swap_keys(only_a, only_b)]
        want = (min(looked_up, default=0.0), max(looked_up, default=0.0))
        assert swap_range(only_a, only_b, evidence) == want


def test_swap_range_reads_only_the_spelling_swap_keys_looks_up() -> None:
    # "b|a" is never looked up (``swap_keys`` puts the smaller word first), so it must not count either.
    evidence = WordEvidence({}, {}, {"a|b": -1.0, "b|a": 5.0, "c|d|e": 7.0})
    assert swap_range(frozenset({"a"}), frozenset({"b"}), evidence) == (-1.0, -1.0)
    assert swap_range(frozenset({"b", "x"}), frozenset({"a"}), evidence) == (-1.0, 0.0)
    assert swap_range(frozenset({"c"}), frozenset({"d|e"}), evidence) == (0.0, 0.0)


def test_what_profile_reads_of_a_description_is_its_first_words() -> None:
    vocab = default_matcher().model.vocabulary
    for description in texts(300, seed=13):
        record = MatchRecord(title="Sony DSC-W120 camera", description=description, brand="Sony")
        p = profile(record, vocab)
        desc_words = text.leading_words(text.fold(description), 80)
        assert p.context == set(text.words(p.title)) | set(desc_words) | p.brand_words
        desc_codes = text.codes_of((c for w in desc_words if not w.isalpha() for c in text.chunks(w)), p.brand_words)
        assert p.codes == p.title_codes | desc_codes
        assert p.code_text == p.title_alnum + " " + text.alnum_folded(" ".join(desc_words)) + "  "


def test_profiles_share_empty_sets_and_still_compare_as_before() -> None:
    vocab = default_matcher().model.vocabulary
    p = profile(MatchRecord(title="Tennis Ball"), vocab)
    assert p.attrs is text.NO_ATTRIBUTES and p.attrs == text.Attributes(*(frozenset(),) * 10)
    assert p.codes == frozenset() and p.codes is text.EMPTY
    q = profile(MatchRecord(title="Tennis Ball 64GB red"), vocab)
    assert q.attrs.measures == {("capacity", "64gb")} and q.attrs.colours == {"red"} and q.attrs.sizes is text.EMPTY
