"""Train the matcher: ``python -m tools.train_matcher [--data ../shared/matching]`` writes
``app/domain/matching/matcher.json``.

Reproducible: fixed seeds, LightGBM in deterministic mode, folds drawn from a seeded generator. Steps:

1. Vocabulary from the distinct records of the *train* splits: IDF of title words and codes, brand names.
2. Word evidence (how a word in one title only, or in both, moves the odds) from the train pairs. The features
   of a train pair use evidence counted on the other four folds only, so the model never learns from a table
   that already saw the pair's own label.
3. Hyper-parameters by 5-fold cross-validation on train (mean of the two datasets' best F1).
4. The final model on all train pairs; thresholds on the validation splits: ``match`` maximises the mean F1 of
   the two datasets, ``merge`` maximises the pooled F0.5 (precision counted twice as much as recall).
"""

from __future__ import annotations

import argparse
import collections
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import orjson

from app.domain.matching import text
from app.domain.matching.features import (
    FEATURES,
    Profile,
    Vocabulary,
    WordEvidence,
    pair_features,
    profile,
    swap_keys,
)
from app.domain.matching.model import FORMAT, MODEL_FILE
from app.domain.matching.records import from_mapping
from app.domain.matching.scoring import one_sided, rule_decision
from app.domain.normalize import brand_key
from tools.matching_data import DATASETS, LabelledPair, default_dir, read_split, split_path

SEED = 20260101
# The first model's logits outside which the bag is not asked (probability ~0.05 and ~0.95).
EARLY_EXIT = (-3.0, 3.0)
OUT = Path(__file__).resolve().parents[1] / "app" / "domain" / "matching" / MODEL_FILE
# Smoothing of the word evidence (pseudo-counts) and the fewest pairs a word must be seen in to count.
_PRIOR_WEIGHT = 1.0
_MIN_PAIRS = 3
# Small ensembles only: every tree costs ~0.15 µs per scored pair inside ingest.
GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 15, "learning_rate": 0.15, "num_boost_round": 60, "min_data_in_leaf": 10},
    {"num_leaves": 31, "learning_rate": 0.15, "num_boost_round": 50, "min_data_in_leaf": 10},
    {"num_leaves": 15, "learning_rate": 0.1, "num_boost_round": 80, "min_data_in_leaf": 10},
)


def record_key(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def build_vocabulary(pairs: Sequence[LabelledPair]) -> Vocabulary:
    records = {record_key(r): r for p in pairs for r in (p.left, p.right)}
    df: collections.Counter[str] = collections.Counter()
    brands: collections.Counter[str] = collections.Counter()
    for r in records.values():
        title = text.fold(r.get("title", ""))
        df.update(set(text.words(title)) | text.codes(title))
        if r.get("brand"):
            names = text.words(text.fold(r["brand"]))
            for key in {brand_key(r["brand"]), names[0] if names else None}:
                if key and len(key) >= 2 and not key.isdigit():
                    brands[key] += 1
    n = len(records)
    idf = {w: round(math.log(n / c), 3) for w, c in df.items()}
    return Vocabulary(idf, round(math.log(n), 3), frozenset(b for b, c in brands.items() if c >= 2))


def word_evidence(pairs: Sequence[LabelledPair], profiles: dict[bytes, Profile]) -> WordEvidence:
    one_pos: collections.Counter[str] = collections.Counter()
    one_neg: collections.Counter[str] = collections.Counter()
    both_pos: collections.Counter[str] = collections.Counter()
    both_neg: collections.Counter[str] = collections.Counter()
    swap_pos: collections.Counter[str] = collections.Counter()
    swap_neg: collections.Counter[str] = collections.Counter()
    for p in pairs:
        a, b = profiles[record_key(p.left)], profiles[record_key(p.right)]
        (one_pos if p.label else one_neg).update(a.core_words ^ b.core_words)
        (both_pos if p.label else both_neg).update(a.core_words & b.core_words)
        swaps = swap_keys(a.core_words - b.core_words, b.core_words - a.core_words)
        (swap_pos if p.label else swap_neg).update(swaps)
    positives = sum(p.label for p in pairs)
    prior = math.log((positives + 1) / (len(pairs) - positives + 1))

    def log_odds(pos: collections.Counter[str], neg: collections.Counter[str]) -> dict[str, float]:
        out = {}
        for w in pos.keys() | neg.keys():
            if pos[w] + neg[w] >= _MIN_PAIRS:
                value = math.log((pos[w] + _PRIOR_WEIGHT * math.exp(prior)) / (neg[w] + _PRIOR_WEIGHT)) - prior
                out[w] = round(value, 3)
        return out

    return WordEvidence(log_odds(one_pos, one_neg), log_odds(both_pos, both_neg), log_odds(swap_pos, swap_neg))


def vetoed_pair(p: LabelledPair, profiles: dict[bytes, Profile]) -> bool:
    return rule_decision(profiles[record_key(p.left)], profiles[record_key(p.right)]) is not None


def features(
    pairs: Sequence[LabelledPair], profiles: dict[bytes, Profile], evidence: WordEvidence
) -> np.ndarray[Any, Any]:
    return np.array(
        [pair_features(profiles[record_key(p.left)], profiles[record_key(p.right)], evidence) for p in pairs]
    )


def best_f1(y: np.ndarray[Any, Any], s: np.ndarray[Any, Any]) -> tuple[float, float]:
    best = (0.0, 0.5)
    for t in np.unique(s):
        f = prf(y, s, float(t))[2]
        if f > best[0]:
            best = (f, float(t))
    return best


def prf(y: np.ndarray[Any, Any], s: np.ndarray[Any, Any], t: float) -> tuple[float, float, float]:
    pred = s >= t
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def f_beta(precision: float, recall: float, beta: float) -> float:
    """Precision weighs 1/beta times recall: beta 0.5 is the usual "precision first" choice."""
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0


def lgb_params(grid: dict[str, Any]) -> dict[str, Any]:
    return {
        "objective": "binary",
        "learning_rate": grid["learning_rate"],
        "num_leaves": grid["num_leaves"],
        "min_data_in_leaf": grid["min_data_in_leaf"],
        "feature_fraction": 0.5,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": SEED,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": 2,
        "verbose": -1,
    }


def fit(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], grid: dict[str, Any], seed: int = SEED) -> lgb.Booster:
    data = lgb.Dataset(x, y, feature_name=list(FEATURES), free_raw_data=False)
    return lgb.train({**lgb_params(grid), "seed": seed}, data, num_boost_round=grid["num_boost_round"])


def bagged_logit(boosters: Sequence[lgb.Booster], x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Mean raw score of the bag, as a probability: what the exported trees (leaves divided by the bag size)
    compute."""
    raw = np.mean([b.predict(x, raw_score=True) for b in boosters], axis=0)
    result: np.ndarray[Any, Any] = 1.0 / (1.0 + np.exp(-raw))
    return result


def export_tree(node: dict[str, Any], scale: float) -> Any:
    if "leaf_value" in node:
        return round(float(node["leaf_value"]) * scale, 8)
    if node["decision_type"] != "<=":
        raise ValueError(f"unsupported split {node['decision_type']}")
    missing = {"None": 0, "NaN": 1, "Zero": 2}[node["missing_type"]]
    return [
        int(node["split_feature"]),
        float(node["threshold"]),
        missing,
        1 if node["default_left"] else 0,
        export_tree(node["left_child"], scale),
        export_tree(node["right_child"], scale),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="folder of the benchmark files")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--bags", type=int, default=5, help="models averaged (seeds SEED, SEED+1, ...)")
    parser.add_argument("--beta", type=float, default=0.5, help="merge maximises pooled validation F-beta")
    args = parser.parse_args()
    data_dir = args.data or default_dir()
    started = time.perf_counter()
    train = {ds: list(read_split(split_path(data_dir, ds, "train"))) for ds in DATASETS}
    valid = {ds: list(read_split(split_path(data_dir, ds, "valid"))) for ds in DATASETS}
    all_train = [p for ds in DATASETS for p in train[ds]]
    origin = np.array([i for i, ds in enumerate(DATASETS) for _ in train[ds]])
    vocab = build_vocabulary(all_train)
    profiles = {
        record_key(r): profile(from_mapping(r), vocab)
        for pairs in (*train.values(), *valid.values())
        for p in pairs
        for r in (p.left, p.right)
    }
    # Pairs the rules decide (identifiers, variant conflicts, nothing in common) never reach the model: leave them
    # out of its training. On the validation splits they score 0 (the benchmarks carry no GTIN or SKU).
    vetoed = {ds: np.array([vetoed_pair(p, profiles) for p in valid[ds]]) for ds in DATASETS}
    one_side = {
        ds: np.array([bool(one_sided(profiles[record_key(p.left)], profiles[record_key(p.right)])) for p in valid[ds]])
        for ds in DATASETS
    }
    kept = [not vetoed_pair(p, profiles) for p in all_train]
    all_train = [p for p, k in zip(all_train, kept, strict=True) if k]
    origin = origin[np.array(kept)]
    y = np.array([int(p.label) for p in all_train])
    folds = np.random.default_rng(SEED).integers(0, 5, len(all_train))
    x = np.zeros((len(all_train), len(FEATURES)))
    for k in range(5):
        evidence = word_evidence([p for p, f in zip(all_train, folds, strict=True) if f != k], profiles)
        held = np.where(folds == k)[0]
        x[held] = features([all_train[i] for i in held], profiles, evidence)

    scores = []
    for grid in GRID:
        per_dataset = []
        for k in range(5):
            model = fit(x[folds != k], y[folds != k], grid)
            s = model.predict(x[folds == k])
            for d in range(len(DATASETS)):
                mask = origin[folds == k] == d
                per_dataset.append(best_f1(y[folds == k][mask], s[mask])[0])
        scores.append(float(np.mean(per_dataset)))
        print(f"cv {grid}: mean best F1 {scores[-1]:.3f}")
    grid = GRID[int(np.argmax(scores))]
    # A bag of models differing only in their bagging seed: one model's F1 on a validation split moves by
    # +-0.01 with the seed alone; the mean of several does not.
    boosters = [fit(x, y, grid, SEED + i) for i in range(args.bags)]

    evidence = word_evidence(all_train, profiles)
    valid_scores = {}
    early: dict[str, int] = {"pairs": 0, "exits": 0}
    exit_logits: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    for ds in DATASETS:
        xv = features(valid[ds], profiles, evidence)
        exit_logits[ds] = (np.asarray(boosters[0].predict(xv, raw_score=True)), vetoed[ds])
        s = np.where(vetoed[ds], 0.0, bagged_logit(boosters, xv))
        valid_scores[ds] = (np.array([int(p.label) for p in valid[ds]]), s)
    candidates = np.round(np.linspace(0.05, 0.95, 181), 3)
    match_t = float(max(candidates, key=lambda t: sum(prf(*valid_scores[ds], t)[2] for ds in DATASETS)))
    # Unification also refuses one-sided tiers and editions (scoring.one_sided): its threshold is chosen so.
    merge_scores = {ds: (valid_scores[ds][0], np.where(one_side[ds], 0.0, valid_scores[ds][1])) for ds in DATASETS}
    pooled_y = np.concatenate([merge_scores[ds][0] for ds in DATASETS])
    pooled_s = np.concatenate([merge_scores[ds][1] for ds in DATASETS])
    merge_t = float(max(candidates, key=lambda t: f_beta(*prf(pooled_y, pooled_s, t)[:2], args.beta)))
    merge_t = max(merge_t, match_t)
    # Early exit (model.Model.probability): where the first model alone is this sure, the bag is not asked.
    # Checked here: on the validation pairs, no decision at either threshold may change.
    for ds in DATASETS:
        first, ruled = exit_logits[ds]
        low, high = (first < EARLY_EXIT[0]) & ~ruled, (first > EARLY_EXIT[1]) & ~ruled
        early["pairs"] += int((~ruled).sum())
        early["exits"] += int((low | high).sum())
        bag = valid_scores[ds][1]
        changed = int((low & (bag >= min(match_t, merge_t))).sum() + (high & (bag < max(match_t, merge_t))).sum())
        if changed or 1 / (1 + np.exp(-EARLY_EXIT[1])) < max(match_t, merge_t):
            raise SystemExit(f"early exit at logits {EARLY_EXIT} changes {changed} decisions on {ds} valid")
    print(f"early exit: {early['exits']} of {early['pairs']} model-scored validation pairs, no decision changed")
    metrics = {}
    for ds in DATASETS:
        for name, t, scored in (("match", match_t, valid_scores), ("merge", merge_t, merge_scores)):
            p, r, f = prf(*scored[ds], t)
            metrics[f"{ds}/{name}"] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}
            print(f"valid {ds} at {name} threshold {t:.3f}: P {p:.3f} R {r:.3f} F1 {f:.3f}")

    exported: dict[str, object] = {
        "format": FORMAT,
        "features": list(FEATURES),
        "trees": [
            export_tree(t["tree_structure"], 1.0 / len(boosters)) for b in boosters for t in b.dump_model()["tree_info"]
        ],
        "vocabulary": {
            "idf": dict(sorted(vocab.idf.items())),
            "default_idf": vocab.default_idf,
            "brands": sorted(vocab.brands),
        },
        "evidence": {
            "one_side": dict(sorted(evidence.one_side.items())),
            "both": dict(sorted(evidence.both.items())),
            "swaps": dict(sorted(evidence.swaps.items())),
        },
        "thresholds": {"match": match_t, "merge": merge_t},
        "bags": len(boosters),
        "early_exit": list(EARLY_EXIT),
        "metadata": {
            "trained_by": "python -m tools.train_matcher",
            "seed": SEED,
            "params": grid,
            "bags": args.bags,
            "early_exit": early,
            "cv_mean_best_f1": round(max(scores), 4),
            "valid": metrics,
            "merge_f_beta": args.beta,
            "train_pairs": len(all_train),
            "train_pairs_vetoed_by_rules": len(kept) - len(all_train),
            "training_seconds": round(time.perf_counter() - started, 1),
        },
    }
    args.out.write_bytes(orjson.dumps(exported) + b"\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
