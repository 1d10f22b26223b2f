"""`python -m bench.search --products N`: search at catalog scale, Tantivy against today's FTS5, as a table.

1. Builds a realistic catalog of N products (``bench.search_data``) into a SQLite file shaped like the store's,
   with today's FTS5 index and a top-k FTS5 variant (``bench.search_fts5``), then the Tantivy index from that
   file, as a rebuild from the store would.
2. Runs every distinct query once per engine, each engine in its own fresh process (so its RSS is its own):
   today's FTS5 query (the baseline), FTS5 top-k, and Tantivy plus the summary read of the page it ordered (what
   the store will do). Then, on Tantivy: facets, filtered and sorted searches, two threads at once, writes
   (upsert + commit of a store batch, one product, a delete) and how soon a search sees them.

RSS is VmRSS of the query process after its queries; RssFile (mapped files: the index segments, SQLite's mapped
pages, shared libraries) and RssAnon (heap) are shown apart. Latency is per query, wall clock, cold in the sense
that no query repeats (the OS page cache is warm from the build, as on a server that has been up a while).
Generated files live in a temporary directory under /tmp, removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.search_data import CatalogGenerator
from bench.table import Row, passed, print_table

STORE_BATCH = 5000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


_MEM = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def memory() -> dict[str, float]:
    """This process's resident memory in MB: total, anonymous (heap) and file-backed (mapped files)."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in _MEM:
            out[key] = int(rest.split()[0]) / 1024
    return out


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def timed(fn: Callable[[str], Any], queries: list[str]) -> tuple[list[float], list[bool]]:
    """Milliseconds per query, and whether each found something."""
    times: list[float] = []
    found: list[bool] = []
    for q in queries:
        started = time.perf_counter()
        result = fn(q)
        times.append((time.perf_counter() - started) * 1000)
        found.append(bool(result))
    return times, found


# -- workers: each runs in its own process -------------------------------------------------------------------


def work_build(workdir: Path) -> dict[str, Any]:
    from app.search import TantivyIndex
    from bench.search_fts5 import read_docs

    index = TantivyIndex(workdir / "index", writer_heap=256_000_000, writer_threads=2)
    started = time.perf_counter()
    n = index.rebuild(read_docs(workdir / "catalog.db"))
    seconds = time.perf_counter() - started
    return {"docs": n, "seconds": seconds, "size_mb": dir_size_mb(workdir / "index"), "peak_mb": memory()["VmHWM"]}


def work_fts5(workdir: Path, engine: str, queries: list[str]) -> dict[str, Any]:
    from bench.search_fts5 import Fts5Search

    fts = Fts5Search(workdir / "catalog.db")
    if engine == "topk":
        started = time.perf_counter()
        fts.vocabulary()
        vocab_ms = (time.perf_counter() - started) * 1000
    times, found = timed(fts.today if engine == "today" else fts.topk, queries)
    out = {"times": times, "hits": found, "memory": memory()}
    if engine == "topk":
        out["vocab_ms"] = vocab_ms
    return out


def work_tantivy(workdir: Path, queries: list[str]) -> dict[str, Any]:
    from app.domain.queries import Sort
    from app.search import SearchFilters, TantivyIndex
    from bench.search_fts5 import Fts5Search

    started = time.perf_counter()
    index = TantivyIndex(workdir / "index")
    open_ms = (time.perf_counter() - started) * 1000
    fts = Fts5Search(workdir / "catalog.db")
    out: dict[str, Any] = {"open_ms": open_ms}
    half = len(queries) // 2
    # Index alone, then index + the store's read of the page's summaries (the path the API will take).
    out["search"] = timed(lambda q: index.search(q, limit=20).ids, queries[:half])
    out["search_page"] = timed(lambda q: fts.summaries(index.search(q, limit=20).ids), queries[half:])
    out["memory_search"] = memory()
    facet_queries = queries[: min(200, len(queries))]
    out["facets"] = timed(lambda q: index.facets(q), facet_queries)[0]
    out["facets_all_ms"] = timed(lambda q: index.facets(None), ["*"])[0][0]
    brand = index.facets(None, size=1).brand[0].key
    filtered = [
        SearchFilters(in_stock=True),
        SearchFilters(min_price=20.0, max_price=200.0),
        SearchFilters(brand=brand),
        SearchFilters(vendor="vendor-03", in_stock=True),
    ]
    out["filtered"] = timed(lambda q: index.search(q, filters=filtered[len(q) % 4]).ids, queries[:200])[0]
    sorts = [Sort.PRICE, Sort.PRICE_DESC, Sort.UPDATED]
    out["sorted"] = timed(lambda q: index.search(q, sort=sorts[len(q) % 3]).ids, queries[200:400])[0]
    out["browse"] = timed(lambda q: index.search(None, sort=sorts[len(q) % 3]).ids, queries[:30])[0]
    out["deep_page"] = _deep_pages(index, queries[:50])
    # The same queries again (now warm), in one thread and then in two.
    out["thread1"] = _threads(index, queries, 1)
    out["threads"] = _threads(index, queries, 2)
    out["memory"] = memory()
    return out


def _deep_pages(index: Any, queries: list[str]) -> list[float]:
    """Page 5 of relevance results (offset 80), as a shopper paging down does."""
    return timed(lambda q: index.search(q, limit=20, after=(80,)).ids, queries)[0]


def _threads(index: Any, queries: list[str], n: int) -> dict[str, float]:
    """``n`` threads searching at once (the API's read pool): queries per second over all, and latencies."""
    times: list[list[float]] = [[] for _ in range(n)]

    def run(i: int) -> None:
        times[i] = timed(lambda q: index.search(q, limit=20).ids, queries[i::n])[0]

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    every = [t for part in times for t in part]
    return {"qps": len(every) / elapsed, "p50": percentile(every, 0.5), "p99": percentile(every, 0.99)}


def work_writes(workdir: Path) -> dict[str, Any]:
    """A store transaction's worth of products replaced and committed; one product; a delete; visibility."""
    from dataclasses import replace

    from app.search import SearchFilters, TantivyIndex
    from bench.search_fts5 import read_docs

    index = TantivyIndex(workdir / "index")
    docs = []
    for doc in read_docs(workdir / "catalog.db"):
        docs.append(replace(doc, name=doc.name + " Refurbished", min_price_base=doc.min_price_base * 0.9))
        if len(docs) == 4 * STORE_BATCH:
            break
    before = memory()
    batch_ms = []
    for i in range(4):
        started = time.perf_counter()
        index.upsert(docs[i * STORE_BATCH : (i + 1) * STORE_BATCH])
        index.commit()
        batch_ms.append((time.perf_counter() - started) * 1000)
    one_ms = []
    for doc in docs[:20]:
        started = time.perf_counter()
        index.upsert([replace(doc, name=doc.name + " Zyxwvut")])
        index.commit()
        one_ms.append((time.perf_counter() - started) * 1000)
    visible = index.search("zyxwvut", limit=50).ids
    started = time.perf_counter()
    index.delete([docs[0].id])
    index.commit()
    delete_ms = (time.perf_counter() - started) * 1000
    gone = docs[0].id not in index.search("zyxwvut", limit=50).ids
    stale = index.count("refurbished", SearchFilters()) == 4 * STORE_BATCH - 1
    index.close()
    return {
        "batch_ms": batch_ms,
        "one_ms": one_ms,
        "delete_ms": delete_ms,
        "visible": len(visible) == 20 and gone and stale,
        "memory": memory(),
        "memory_before": before,
    }


def _worker(args: argparse.Namespace) -> None:
    workdir = Path(args.dir)
    queries: list[str] = [text for _, text in json.loads((workdir / "queries.json").read_text())]
    queries_fts = queries[: args.baseline_queries] if args.baseline_queries else queries
    result: dict[str, Any]
    if args.worker == "build":
        result = work_build(workdir)
    elif args.worker in ("today", "topk"):
        result = work_fts5(workdir, args.worker, queries_fts)
    elif args.worker == "tantivy":
        result = work_tantivy(workdir, queries)
    else:
        result = work_writes(workdir)
    print(json.dumps(result))


def run_worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.search", "--worker", name, "--dir", args.dir]
    if args.baseline_queries:
        cmd += ["--baseline-queries", str(args.baseline_queries)]
    print(f"  {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    print(f"  {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the table ------------------------------------------------------------------------------------------------


def _lat(times: list[float]) -> str:
    return f"p50 {percentile(times, 0.5):.2f} ms, p99 {percentile(times, 0.99):.2f} ms"


def _engine_row(name: str, times: list[float], hits: list[bool], base: list[float] | None) -> Row:
    value = _lat(times) + f", {sum(hits)}/{len(hits)} found"
    if base is not None:
        value += f"; vs baseline p50 {percentile(base, 0.5) / percentile(times, 0.5):.1f}x"
        value += f", p99 {percentile(base, 0.99) / percentile(times, 0.99):.1f}x"
    return Row(name, value, "", None)


def report(n: int, kinds: list[str], built: dict[str, Any], res: dict[str, dict[str, Any]]) -> list[Row]:
    nan = float("nan")
    missing = {"times": [nan] * len(kinds), "hits": [False] * len(kinds), "memory": dict.fromkeys(_MEM, 0.0)}
    today, topk = res.get("today", missing), res.get("topk", missing)
    tan, writes = res["tantivy"], res["writes"]
    tan_times = tan["search"][0] + tan["search_page"][0]
    tan_hits = tan["search"][1] + tan["search_page"][1]
    p50, p99 = percentile(tan_times, 0.5), percentile(tan_times, 0.99)
    sqlite = built["sqlite"]
    rows = [
        Row("catalog", f"{n} products, {len(kinds)} distinct queries, each run once per engine", "", None),
        Row(
            "build: SQLite rows, FTS5 today, FTS5 top-k (prefix index)",
            f"{sqlite['rows']:.1f} s, {sqlite['products_fts']:.1f} s, {sqlite['products_fts_topk']:.1f} s",
            "",
            None,
        ),
        Row(
            "build: Tantivy, read from the SQLite file",
            f"{built['tantivy']['seconds']:.1f} s ({n / built['tantivy']['seconds']:.0f} docs/s, "
            f"peak RSS {built['tantivy']['peak_mb']:.0f} MB)",
            "",
            None,
        ),
        Row(
            "size: SQLite file (rows + both FTS5) / Tantivy index",
            f"{built['db_mb']:.0f} MB / {built['tantivy']['size_mb']:.0f} MB",
            "",
            None,
        ),
        _engine_row("FTS5 today (baseline)", today["times"], today["hits"], None),
        _engine_row("FTS5 top-k + typo expansion", topk["times"], topk["hits"], today["times"]),
        _engine_row("Tantivy, index only (1st half of queries)", tan["search"][0], tan["search"][1], None),
        _engine_row("Tantivy + page read from SQLite (2nd half)", tan["search_page"][0], tan["search_page"][1], None),
        Row(
            "Tantivy, all distinct queries",
            _lat(tan_times) + f", {sum(tan_hits)}/{len(tan_hits)} found",
            "p50<=10, p99<=50",
            p50 <= 10 and p99 <= 50,
        ),
        _engine_row("Tantivy vs baseline", tan_times, tan_hits, today["times"]),
    ]
    for kind in sorted(set(kinds)):
        pick = [i for i, k in enumerate(kinds) if k == kind]
        parts = []
        for name, times, hits in (("today", today["times"], today["hits"]), ("Tantivy", tan_times, tan_hits)):
            ts = [times[i] for i in pick]
            parts.append(f"{name} {percentile(ts, 0.5):.1f}/{percentile(ts, 0.99):.1f} ms {sum(hits[i] for i in pick)}")
        rows.append(Row(f"  {kind} ({len(pick)}): p50/p99, found", "; ".join(parts), "", None))
    rows += [
        Row("Tantivy, filtered (stock, price, brand, vendor)", _lat(tan["filtered"]), "", None),
        Row("Tantivy, sorted by price / -price / updated", _lat(tan["sorted"]), "", None),
        Row("Tantivy, browse without text, sorted", _lat(tan["browse"]), "", None),
        Row("Tantivy, page 5 (offset 80)", _lat(tan["deep_page"]), "", None),
        Row("Tantivy, facets of a search", _lat(tan["facets"]), "", None),
        Row("Tantivy, facets of the whole catalog", f"{tan['facets_all_ms']:.1f} ms", "", None),
        *(
            Row(
                f"Tantivy, {label}, queries again",
                f"{tan[key]['qps']:.0f} q/s, p50 {tan[key]['p50']:.2f} ms, p99 {tan[key]['p99']:.2f} ms",
                "",
                None,
            )
            for key, label in (("thread1", "1 thread"), ("threads", "2 threads at once"))
            if key in tan
        ),
        Row("Tantivy, open the index", f"{tan['open_ms']:.1f} ms", "", None),
        Row(
            "write: upsert 5000 + commit + reload",
            f"p50 {statistics.median(writes['batch_ms']):.0f} ms (max {max(writes['batch_ms']):.0f})",
            "",
            None,
        ),
        Row("write: upsert 1 + commit + reload", f"p50 {statistics.median(writes['one_ms']):.1f} ms", "", None),
        Row("write: delete 1 + commit + reload", f"{writes['delete_ms']:.1f} ms", "", None),
        Row("write: visible to the next search", "yes" if writes["visible"] else "NO", "yes", writes["visible"]),
    ]
    w, w0 = writes["memory"], writes.get("memory_before", writes["memory"])
    rows.append(
        Row(
            "RSS: added by the writer and its writes",
            f"{w['VmRSS'] - w0['VmRSS']:.0f} MB (anon {w['RssAnon'] - w0['RssAnon']:.0f}, "
            f"mapped files {w['RssFile'] - w0['RssFile']:.0f})",
            "",
            None,
        )
    )
    for name, r in (("FTS5 today", today), ("FTS5 top-k", topk), ("Tantivy", tan)):
        m = r["memory"]
        rows.append(
            Row(
                f"RSS: {name} query process",
                f"{m['VmRSS']:.0f} MB (anon {m['RssAnon']:.0f}, mapped files {m['RssFile']:.0f})",
                "<=300 MB" if name == "Tantivy" else "",
                m["VmRSS"] <= 300 if name == "Tantivy" else None,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--baseline-queries", type=int, default=0, help="cap the FTS5 runs (0: all queries)")
    parser.add_argument("--dir", help="work directory (default: a new one under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--reuse", action="store_true", help="reuse the SQLite file a --keep run left in --dir")
    parser.add_argument(
        "--only", help="with --reuse: run only these workers (comma-separated), read the others' last results"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    from bench import search_fts5

    args.dir = args.dir or tempfile.mkdtemp(prefix="bench-search-", dir="/tmp")
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        generator = CatalogGenerator()
        queries = generator.queries(args.queries)
        (workdir / "queries.json").write_text(json.dumps(queries))
        db = workdir / "catalog.db"
        if args.reuse and db.exists():
            built: dict[str, Any] = {"sqlite": json.loads((workdir / "sqlite.json").read_text())}
        else:
            db.unlink(missing_ok=True)
            print(f"building {args.products} products in {workdir} ...", file=sys.stderr, flush=True)
            built = {"sqlite": search_fts5.build(db, generator.products(args.products))}
            (workdir / "sqlite.json").write_text(json.dumps(built["sqlite"]))
        built["db_mb"] = os.path.getsize(db) / 1e6
        only = set(args.only.split(",")) if args.reuse and args.only else None
        results: dict[str, dict[str, Any]] = {}
        for name in ("build", "today", "topk", "tantivy", "writes"):
            saved = workdir / f"result-{name}.json"
            if only is not None and name not in only:
                if saved.exists():
                    results[name] = json.loads(saved.read_text())
                continue
            if name == "build":
                shutil.rmtree(workdir / "index", ignore_errors=True)
            results[name] = run_worker(name, args)
            saved.write_text(json.dumps(results[name]))
        built["tantivy"] = results.pop("build")
        rows = report(args.products, [kind for kind, _ in queries], built, results)
        print_table(rows)
        if not passed(rows):
            sys.exit(1)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
