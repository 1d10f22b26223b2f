"""The store's candidate pairs (``StoreUnifier.index``): its bookkeeping against the definition it stands for."""

from __future__ import annotations

import random

from app.store.sqlite.matching import _pairs


def test_store_pairs_are_every_pair_of_other_vendors_sharing_a_key() -> None:
    """``_pairs`` against its definition: written offers with the stored offers of other vendors under their
    keys, and written offers of two vendors with each other, each pair once (smaller rowid first), nobody with
    themselves. ``stored`` is by vendor, as ``_blocks`` reads it: a write of several vendors never pairs an offer
    with a stored one of its own vendor."""
    rnd = random.Random(9)
    for _ in range(300):
        written = {(rnd.choice("abc"), str(i)): i for i in rnd.sample(range(60), rnd.randint(0, 25))}
        hashes = {key: sorted(rnd.sample(range(12), rnd.randint(0, 4))) for key in written}
        index = [(h, rnd.choice("abc"), s) for h in rnd.sample(range(12), 6) for s in rnd.sample(range(40, 80), 3)]
        stored = {
            v: {h: [s for k, w, s in index if k == h and w != v] for h in range(12)} for v in {k[0] for k in written}
        }
        want: set[tuple[int, int]] = set()
        for key, hs in hashes.items():
            me = written[key]
            want.update((min(me, s), max(me, s)) for h in hs for k, v, s in index if k == h and v != key[0])
            for other, theirs in hashes.items():
                if other[0] != key[0] and set(hs) & set(theirs):
                    want.add((min(me, written[other]), max(me, written[other])))
        assert _pairs(hashes, written, stored) == want
