"""Blocking: the few stored offers worth scoring against a new one, found by key lookups instead of a scan.

A store indexes every offer under its keys and, for a new offer, scores only the offers that share at least one
key, so the cost of matching an offer depends on how many offers share its keys, not on the catalog's size.
Keys are a pure function of the record and of the shipped vocabulary (never of what the catalog holds), so the
same offer always has the same keys and candidate sets do not depend on arrival order.

Kinds of key (the prefix says which):

- ``g:`` the GTIN; ``c:`` each model/part number (title, MPN, description); ``m:`` its stem without a colour or
  region suffix ("yht390bk" and "yht-390bl" meet); ``s:`` brand + normalised SKU;
- ``n:`` each number of three or more digits in the title ("p6000" and "coolpixp6000bk" both say 6000);
- ``w:`` each pair among the title's six rarest words (by the training corpus' IDF): two listings of one
  product almost always share two uncommon words, while common words ("black", "case") would make huge blocks;
  and each of the two rarest alone when it is very rare (IDF >= 5);
- ``b:`` brand + each of its two rarest title words, for short titles where the brand carries the weight;
- ``t:`` the brand and the title's words, all of them: listings titled alike whose words are all common
  ("Annibale Colombo Sofa #24") make no ``w:`` key but must still meet.

Whole numbers standing alone ("#24", "iPhone 12") make no key by themselves: in a catalog of numbered
look-alikes ("Tennis Ball #1" ... "#500") a number is as common as a common word. Instead the word keys
(``w: b: t: n:``) carry the title's whole numbers ("w:ball|tennis#24"), so listings meet on them only when their
numbers are the same. Listings whose numbers differ are refused when merging anyway (``number``: the conflict
rule when both have numbers the other lacks, ``one_sided`` when only one has any) unless a model number ties
them, and model numbers (``c: m: g: s:``) are never qualified. Without this a number-suffixed range made every
listing a candidate of all the others (270 candidates per offer at 20k offers per vendor, growing with the
catalog; about 10 at 40k with it, see the issue-10 notes).
"""

from __future__ import annotations

from itertools import combinations

from app.domain.matching.features import Profile, Vocabulary
from app.domain.matching.text import COMPANY_WORDS

#: Block purging: a key shared by more offers than this makes no candidates for any of them. A word is rare in the
#: training corpus but not in every catalog: a perfume shop's "eau de", a generated catalog's reused names; without a
#: cap every new offer under such a key was scored against all the others, and matching grew with the catalog
#: (blocks of 6,500 offers at 50k products, tens of thousands at a million). Identifiers and model numbers keep a
#: far larger cap: their blocks are the same item's offers (the simulators' clones of one model: 382 at 40k per
#: store), where a word's are look-alikes. The demo stores' largest word block is 35 at 40k positions each, the
#: benchmarks' 60 (Abt-Buy) and 83 (Amazon-Google), yet no true pair of theirs that merging would take meets only
#: on a key of more than 30 offers (``bench.matching``'s blocking recall, the same at caps 100, 50 and 30). At 100
#: the search bench's catalog of look-alikes scored ~64 candidates per new offer at 100k products (and CPU per offer
#: grew 5x between 5k and 30k); at 50, ~27-32 (issue 13 notes).
MAX_WORD_BLOCK = 50
MAX_CODE_BLOCK = 1000
_CODE_KINDS = ("g:", "s:", "c:", "m:")

_RARE_WORDS = 6
# A word this rare (IDF; in fewer than ~1 record in 150 of the training corpus) is a key on its own.
_SINGLE_IDF = 5.0
# Words this common (IDF below this, i.e. in more than ~1 record in 12 of the training corpus) make no key.
_MIN_IDF = 2.0
_MIN_CODE = 4


def blocking_keys(p: Profile, vocab: Vocabulary) -> frozenset[str]:
    keys: set[str] = set()
    bare = p.whole_numbers  # the title's standalone whole numbers: what qualifies its word keys
    if p.gtin:
        keys.add(f"g:{p.gtin}")
    for code in p.codes:
        if len(code) >= _MIN_CODE:
            keys.add(f"c:{code}")
    for stem in p.stems:
        if len(stem) >= _MIN_CODE:
            keys.add(f"m:{stem}")
    numbers = sorted(w for w in p.words if w.isdigit() and len(w) >= 3 and w not in p.attrs.years and w not in bare)
    for number in numbers[:3]:
        keys.add(f"n:{number}")
    if p.sku and p.brand:
        keys.add(f"s:{p.brand}|{p.sku}")
    words = [w for w in p.core_words if len(w) >= 2 and w not in COMPANY_WORDS and vocab.weight(w) >= _MIN_IDF]
    rare = sorted(words, key=lambda w: (-vocab.weight(w), w))[:_RARE_WORDS]
    for x, y in combinations(sorted(rare), 2):
        if x not in bare or y not in bare:
            keys.add(f"w:{x}|{y}")
    for w in rare[:2]:
        if vocab.weight(w) >= _SINGLE_IDF and w not in bare:
            keys.add(f"w:{w}")
    if p.brand:
        for w in rare[:2]:
            if w != p.brand and w not in bare:
                keys.add(f"b:{p.brand}|{w}")
        if p.core_words:
            keys.add(f"t:{p.brand}|{'|'.join(sorted(p.core_words))}")
    if len(rare) == 1 and rare[0] not in bare:
        keys.add(f"w:{rare[0]}")
    if not bare:
        return frozenset(keys)
    qualifier = ",".join(sorted(bare))
    return frozenset(f"{k}#{qualifier}" if k.startswith(_QUALIFIED) else k for k in keys)


_QUALIFIED = ("w:", "b:", "t:", "n:")


def max_block(key: str) -> int:
    """The most offers ``key`` may be shared by and still make candidates (see ``MAX_WORD_BLOCK``)."""
    return MAX_CODE_BLOCK if key.startswith(_CODE_KINDS) else MAX_WORD_BLOCK
