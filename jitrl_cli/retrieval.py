"""Retrieval: the k nearest stored steps of a state, as the advantage estimator's neighbours (paper §4.1)."""

from __future__ import annotations

import numpy as np

from jitrl_cli.advantage import Neighbour
from memories.store import MemoryStore


def retrieve(
    store: MemoryStore, namespace: str, vector: np.ndarray, k: int, min_similarity: float, world_hash: str | None = None
) -> list[Neighbour]:
    """The neighbours N(s) of a state: at most ``k`` stored steps with cosine similarity ≥ ``min_similarity``.

    With ``world_hash`` (the exact-match state key), steps taken in exactly the same
    world state come first (similarity 1, most recent first) and the ANN neighbours
    fill the remaining places.

    Args:
        store: the memory.
        namespace: game (or web suite/site) whose steps are searched.
        vector: the state key's embedding, float32 of shape (dim,).
        k: maximum neighbours.
        min_similarity: threshold in [−1, 1].
        world_hash: exact-match key of the current state, or None for ANN only.

    Returns:
        neighbours by decreasing similarity, each with its action and discounted return G.
    """
    hits = store.query_exact(namespace, world_hash, k) if world_hash else []
    if len(hits) < k:
        seen = {h.id for h in hits}
        hits += [h for h in store.query(namespace, vector, k=k, min_similarity=min_similarity) if h.id not in seen][: k - len(hits)]
    return [Neighbour(h.action, h.ret, h.similarity, h.id) for h in hits]
