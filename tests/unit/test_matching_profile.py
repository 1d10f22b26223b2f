"""Reading a record fast must not read it differently: the shortcuts of ``profile`` against their definitions."""

from __future__ import annotations

import random
import re

import pytest

from app.domain.matching import MatchRecord, default_matcher, text
from app.domain.matching.features import VARIANTS, profile

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
