"""The store's candidate pairs (``StoreUnifier.index``): its bookkeeping against the definition it stands for."""

from __future__ import annotations

import random

from app.store.sqlite.matching import _pairs


def test_store_pairs_are_every_pair_of_other_vendors_sharing_a_key() -> None:
    """``_pairs`` against its definition: written offers with the stored offers under their keys, and written
    offers of two vendors with each other, each pair once (smaller rowid first), nobody with themselves."""
    rnd = random.Random(9)
    for _ in range(300):
        written = {(rnd.choice("abc"), str(i)): i for i in rnd.sample(range(60), rnd.randint(0, 25))}
        hashes = {key: sorted(rnd.sample(range(12), rnd.randint(0, 4))) for key in written}
        stored = {h: rnd.sample(range(40, 80), rnd.randint(0, 3)) for h in rnd.sample(range(12), 6)}
        want: set[tuple[int, int]] = set()
        for key, hs in hashes.items():
            me = written[key]
            want.update((min(me, s), max(me, s)) for h in hs for s in stored.get(h, ()) if s != me)
            for other, theirs in hashes.items():
                if other[0] != key[0] and set(hs) & set(theirs):
                    want.add((min(me, written[other]), max(me, written[other])))
        assert _pairs(hashes, written, stored) == want
