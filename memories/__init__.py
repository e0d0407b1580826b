"""The on-disk experience memory of JitRL: SQLite rows (truth) + an hnswlib index (derived)."""

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
