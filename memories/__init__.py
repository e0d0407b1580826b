"""The on-disk experience memory of JitRL: SQLite rows (truth) + an hnswlib index (derived).

    embedding.py   state key → vector (the index's embedder)
    files.py       the directory's files kept safe: one-line errors, the writer lock, access checks
    store.py       MemoryStore: episodes and steps in SQLite, the hnswlib index per game, the queries retrieval needs
    repair.py      salvage a damaged database, rebuild the indexes
    stats.py       what `jitrl memory stats` counts
    transfer.py    export and import between memories
"""

from memories.embedding import Embedder, HashedNgramEmbedder, get_embedder
from memories.store import EpisodeRecord, MemoryStore, RetrievedStep, StepRecord

__all__ = [
    "Embedder",
    "HashedNgramEmbedder",
    "get_embedder",
    "MemoryStore",
    "EpisodeRecord",
    "StepRecord",
    "RetrievedStep",
]
