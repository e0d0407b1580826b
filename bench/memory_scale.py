"""Scale benchmark of the experience store (issue 3): 1,000,000 synthetic steps.

Fills a fresh memory through the real :class:`memories.store.MemoryStore` with
synthetic Zork-like state keys (rooms, inventories, scores, room descriptions and
events) embedded by the real ``hash-ngram-v1`` embedder, then reports

* insert rate: SQLite rows/s (episodes written in transactions, index deferred),
  index build rate (``rebuild_index``, all cores), and the latency of the play
  path ``write_episode`` (one 50-step episode, index caught up and saved) at full size;
* file sizes of the database and the index;
* query latency p50/p99 of ``MemoryStore.query(k=10)`` (ANN search + SQLite row fetch)
  over fresh queries, and recall@10 against exact (brute-force cosine) search.
  Ties are counted as hits: a returned step is correct when its exact similarity
  is at least the 10th best exact similarity (minus 1e-6).

Usage::

    python bench/memory_scale.py --steps 1000000 --dir /tmp/jitrl-scale   # ~15 min on 2 cores
    python bench/memory_scale.py --steps 20000                              # quick check

Goal (issue 3): p99 ≤ 5 ms and recall@10 ≥ 0.95 on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.state_key import build_state_key  # noqa: E402
from memories.embedding import get_embedder  # noqa: E402
from memories.store import EpisodeRecord, MemoryStore, StepRecord  # noqa: E402

_WORDS = (
    "house forest path door window table chest lamp sword egg leaves grating trap rug troll river boat dam "
    "cellar attic kitchen stairs clearing canyon rainbow temple mirror altar coffin skeleton bat maze gallery "
    "painting torch rope knife bottle water garlic lunch sack leaflet mailbox tree nest jewel coin bracelet "
    "dark light north south east west up down small large white brown old wooden iron golden open closed"
).split()
_ACTIONS = ["north", "south", "east", "west", "up", "down", "take lamp", "open door", "open mailbox", "read leaflet",
            "turn on lamp", "take sword", "climb tree", "enter house", "look", "inventory", "drop sack", "kill troll with sword"]


class SyntheticGame:
    """A random world: rooms with fixed descriptions, items, and events; yields state keys."""

    def __init__(self, rng: np.random.Generator, rooms: int = 2000, items: int = 60) -> None:
        self.rng = rng
        self.rooms = [" ".join(rng.choice(_WORDS, size=2)) + f" {i}" for i in range(rooms)]
        self.descriptions = [" ".join(rng.choice(_WORDS, size=int(rng.integers(12, 40)))) for _ in range(rooms)]
        self.items = [" ".join(rng.choice(_WORDS, size=2)) for _ in range(items)]

    def state_key(self) -> str:
        rng = self.rng
        room = int(rng.zipf(1.3)) % len(self.rooms)  # a few rooms are visited much more often
        inventory = list(rng.choice(self.items, size=int(rng.integers(0, 5)), replace=False))
        event = " ".join(rng.choice(_WORDS, size=int(rng.integers(0, 8))))
        return build_state_key(self.rooms[room], inventory, int(rng.integers(0, 60)),
                               f"{self.rooms[room]}\n{self.descriptions[room]} {event}")


def episodes(game: SyntheticGame, embedder, n_steps: int, per_episode: int, rng: np.random.Generator):
    """Yield (EpisodeRecord, steps) until ``n_steps`` steps were produced."""
    made = 0
    while made < n_steps:
        n = min(per_episode, n_steps - made)
        steps = []
        for t in range(n):
            key = game.state_key()
            steps.append(StepRecord(step=t, state_key=key, embedding=embedder.embed(key), action=str(rng.choice(_ACTIONS)),
                                    reward=float(rng.random() < 0.02) * 5, ret=float(rng.normal()), score=0.0))
        made += n
        yield EpisodeRecord(uuid=uuid.uuid4().hex, game="synthetic", score=float(rng.integers(0, 50)), steps=n), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--episode-steps", type=int, default=50)
    parser.add_argument("--batch-episodes", type=int, default=200, help="episodes per SQLite transaction while filling")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/jitrl-memory-scale"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ef", type=int, nargs="*", default=[], help="also measure these hnswlib ef values")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--reuse", action="store_true", help="keep a memory already filled by an earlier run; measure queries only")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    embedder = get_embedder()
    game = SyntheticGame(rng)
    results: dict[str, object] = {"steps": args.steps, "dim": embedder.dim, "embedder": embedder.name}
    if not args.reuse:
        if args.dir.exists():
            shutil.rmtree(args.dir)
        fill(args, game, embedder, rng, results)
    measure(args, game, embedder, results)
    results["goal_met"] = bool(results["query_ms_p99"] <= 5.0 and results["recall_at_10"] >= 0.95)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def fill(args, game, embedder, rng, results) -> None:
    """Phases 1-3: rows, index build, the play write path."""
    store = MemoryStore(args.dir, embedder)

    # 1. rows: generate + embed (timed separately) and write in transactions, index deferred
    gen_seconds = write_seconds = 0.0
    batch: list = []
    t_gen = time.perf_counter()
    for record in episodes(game, embedder, args.steps, args.episode_steps, rng):
        batch.append(record)
        if len(batch) == args.batch_episodes:
            gen_seconds += time.perf_counter() - t_gen
            t0 = time.perf_counter()
            store.write_episodes(batch, update_index=False)
            write_seconds += time.perf_counter() - t0
            batch = []
            print(f"\rrows {store.count_steps():>9}", end="", file=sys.stderr, flush=True)
            t_gen = time.perf_counter()
    if batch:
        t0 = time.perf_counter()
        store.write_episodes(batch, update_index=False)
        write_seconds += time.perf_counter() - t0
    print(file=sys.stderr)
    results["generate_and_embed_seconds"] = round(gen_seconds, 1)
    results["sqlite_insert_rows_per_second"] = round(args.steps / write_seconds)

    # 2. index build from the rows (all cores)
    t0 = time.perf_counter()
    store.rebuild_index("synthetic", lambda d, t: print(f"\rindexed {d:>9}/{t}", end="", file=sys.stderr, flush=True))
    build = time.perf_counter() - t0
    print(file=sys.stderr)
    results["index_build_seconds"] = round(build, 1)
    results["index_insert_rows_per_second"] = round(args.steps / build)

    # 3. the play path at full size: one more episode through write_episode (rows + index catch-up + save policy)
    lat = []
    for record in episodes(game, embedder, args.episode_steps * 5, args.episode_steps, rng):
        t0 = time.perf_counter()
        store.write_episode(*record)
        lat.append(time.perf_counter() - t0)
    results["write_episode_seconds_median"] = round(float(np.median(lat)), 4)
    t0 = time.perf_counter()
    store.close()
    results["close_seconds"] = round(time.perf_counter() - t0, 2)



def timed_queries(store: MemoryStore, queries: np.ndarray) -> tuple[list[float], list[list[int]]]:
    """Seconds per ``store.query(k=10)`` and the ids it returned, for each query vector."""
    latencies, answers = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = store.query("synthetic", q, k=10)
        latencies.append(time.perf_counter() - t0)
        answers.append([h.id for h in hits])
    return latencies, answers


def measure(args, game, embedder, results) -> None:
    """Phases 4-6: sizes, query latency, recall against exact search."""
    # 4. sizes
    db_bytes = sum(p.stat().st_size for p in args.dir.glob("memory.sqlite*"))
    index_bytes = sum(p.stat().st_size for p in (args.dir / "index").glob("*.hnsw"))
    results["database_mib"] = round(db_bytes / 2**20, 1)
    results["index_mib"] = round(index_bytes / 2**20, 1)

    # 5. reopen (as a new `jitrl play` would) and query
    t0 = time.perf_counter()
    store = MemoryStore(args.dir, embedder)
    store.index_for("synthetic")
    results["open_and_load_index_seconds"] = round(time.perf_counter() - t0, 2)
    queries = np.vstack([embedder.embed(game.state_key()) for _ in range(args.queries)])
    for q in queries[:20]:  # warm up
        store.query("synthetic", q, k=10)
    latencies, answers = timed_queries(store, queries)
    results["query_ms_p50"] = round(float(np.percentile(latencies, 50)) * 1e3, 3)
    results["query_ms_p99"] = round(float(np.percentile(latencies, 99)) * 1e3, 3)
    results["ef_search"] = store.ef_search
    sweep = {}
    for ef in args.ef:
        store.ef_search = ef
        sweep[ef] = timed_queries(store, queries)

    # 6. exact search over every stored vector, in chunks
    ids_all, sims_all = [], []
    last = 0
    while True:
        rows = store.read("SELECT id, embedding FROM steps WHERE id > ? ORDER BY id LIMIT 100000", (last,))
        if not rows:
            break
        ids = np.array([r[0] for r in rows])
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        ids_all.append(ids)
        sims_all.append(queries @ vecs.T)
        last = int(ids[-1])
    ids = np.concatenate(ids_all)
    sims = np.concatenate(sims_all, axis=1)
    position = {int(i): j for j, i in enumerate(ids)}
    kth = np.partition(sims, -10, axis=1)[:, -10]

    def recall(answer_lists: list[list[int]]) -> list[float]:
        return [sum(1 for a in answer if sims[qi, position[a]] >= kth[qi] - 1e-6) / 10
                for qi, answer in enumerate(answer_lists)]

    recalls = recall(answers)
    results["recall_at_10"] = round(float(np.mean(recalls)), 4)
    results["recall_at_10_min"] = round(float(np.min(recalls)), 2)
    results["ef_sweep"] = {
        str(ef): {"recall_at_10": round(float(np.mean(recall(ans))), 4),
                  "query_ms_p50": round(float(np.percentile(lat, 50)) * 1e3, 3),
                  "query_ms_p99": round(float(np.percentile(lat, 99)) * 1e3, 3)}
        for ef, (lat, ans) in sweep.items()
    }
    store.close()


if __name__ == "__main__":
    main()
