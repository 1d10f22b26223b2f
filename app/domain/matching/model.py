"""The shipped model: gradient-boosted trees over the pair features, with the vocabulary they were trained on.

Trained by ``python -m tools.train_matcher`` (LightGBM, seeded) and written to ``matcher.json`` beside this module:
the trees as nested lists, the IDF table, the brand vocabulary, the learnt word evidence and the two thresholds.
Scoring needs no LightGBM: the trees are compiled once, on first use, into one plain Python function (a chain of
comparisons per tree), which costs a few microseconds per pair where a library call would cost far more than the
whole ingest budget of an offer. Nothing is read at import time.

The trees are a bag of ``bags`` models in order, leaves already divided by ``bags`` (their sum is the mean raw
score). Tree nodes are ``[feature, threshold, missing, default_left, left, right]`` or a leaf value; ``missing`` is
LightGBM's missing-value mode for that split (0: none, so NaN reads as 0; 1: NaN; 2: zero or NaN).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from app.domain.matching.features import FEATURES, Vocabulary, WordEvidence

MODEL_FILE = "matcher.json"
_NO_EXIT = (-math.inf, math.inf)
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``match``: best F1 on the validation splits (``catalog match``). ``merge``: chosen for precision, used by
    unification, where a false merge shows a shopper a wrong price and a missed one only a duplicate line."""

    match: float
    merge: float


@dataclass(frozen=True, slots=True)
class Model:
    vocabulary: Vocabulary
    evidence: WordEvidence
    thresholds: Thresholds
    predict_raw: Callable[[Sequence[float]], float]
    trees: int
    metadata: dict[str, Any]
    first_bag: Callable[[Sequence[float]], float] | None = None
    bags: int = 1
    early_exit: tuple[float, float] = (-math.inf, math.inf)

    def probability(self, features: Sequence[float]) -> float:
        """The bag's mean; when the bag's first model alone is that sure (its logit outside ``early_exit``),
        that model's answer.

        Most candidates a blocking index returns are clear non-matches, and most true pairs are clear matches,
        so this skips four fifths of the trees for most pairs. The training command checks that no decision at
        either threshold changes on the validation pairs (``metadata.early_exit``)."""
        if self.first_bag is not None:
            first = self.first_bag(features) * self.bags
            if not self.early_exit[0] <= first <= self.early_exit[1]:
                return 1.0 / (1.0 + math.exp(-first))
        raw = self.predict_raw(features)
        return 1.0 / (1.0 + math.exp(-raw))


def _condition(node: list[Any]) -> str:
    feature, threshold, missing, default_left = int(node[0]), float(node[1]), int(node[2]), bool(node[3])
    x = f"x{feature}"
    if missing == 0:
        return f"(z{feature} <= {threshold!r})"
    if missing == 1:
        return f"({x} <= {threshold!r} or {x} != {x})" if default_left else f"({x} <= {threshold!r})"
    missing_test = f"({x} != {x} or -1e-35 <= {x} <= 1e-35)"
    if default_left:
        return f"({missing_test} or {x} <= {threshold!r})"
    return f"(not {missing_test} and {x} <= {threshold!r})"


def _expression(node: Any) -> str:
    if not isinstance(node, list):
        return repr(float(node))
    return f"({_expression(node[4])} if {_condition(node)} else {_expression(node[5])})"


def compile_trees(trees: Sequence[Any], n_features: int) -> Callable[[Sequence[float]], float]:
    """One function summing every tree's leaf: the source is generated from numbers only (``repr`` of floats
    and ints), so nothing from the file can be anything but a comparison or a constant."""
    names = ", ".join(f"x{i}" for i in range(n_features))
    lines = ["def predict_raw(x):", f"    {names}, = x"]
    lines += [f"    z{i} = x{i} if x{i} == x{i} else 0.0" for i in range(n_features)]
    lines.append("    s = 0.0")
    lines += [f"    s += {_expression(tree)}" for tree in trees]
    lines.append("    return s")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<matcher trees>", "exec"), namespace)
    function: Callable[[Sequence[float]], float] = namespace["predict_raw"]
    return function


def from_dict(data: dict[str, Any]) -> Model:
    if data.get("format") != FORMAT:
        raise ValueError(f"matcher model format {data.get('format')!r}, expected {FORMAT}")
    if list(data["features"]) != list(FEATURES):
        raise ValueError("matcher model was trained on other features; retrain with python -m tools.train_matcher")
    vocab = data["vocabulary"]
    bags = int(data.get("bags", 1))
    per_bag = len(data["trees"]) // bags
    return Model(
        vocabulary=Vocabulary(
            idf={str(k): float(v) for k, v in vocab["idf"].items()},
            default_idf=float(vocab["default_idf"]),
            brands=frozenset(vocab["brands"]),
        ),
        evidence=WordEvidence(
            one_side={str(k): float(v) for k, v in data["evidence"]["one_side"].items()},
            both={str(k): float(v) for k, v in data["evidence"]["both"].items()},
            swaps={str(k): float(v) for k, v in data["evidence"]["swaps"].items()},
        ),
        thresholds=Thresholds(match=float(data["thresholds"]["match"]), merge=float(data["thresholds"]["merge"])),
        predict_raw=compile_trees(data["trees"], len(FEATURES)),
        trees=len(data["trees"]),
        metadata=dict(data.get("metadata", {})),
        first_bag=compile_trees(data["trees"][:per_bag], len(FEATURES)) if bags > 1 else None,
        bags=bags,
        early_exit=(float(data["early_exit"][0]), float(data["early_exit"][1])) if "early_exit" in data else _NO_EXIT,
    )


@functools.cache
def load_model() -> Model:
    """The shipped model, read and compiled once per process on first use."""
    raw = resources.files("app.domain.matching").joinpath(MODEL_FILE).read_bytes()
    return from_dict(orjson.loads(raw))
