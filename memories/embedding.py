"""State-key embedders: text → fixed-size L2-normalised float32 vector for cosine search.

The default, ``hash-ngram-v1``, is deterministic and model-free: signed feature
hashing (Weinberger et al., 2009) of field-tagged tokens and word bigrams.
Embedders are pluggable through :func:`get_embedder`; a memory records the name
and dimension of the embedder that built it and refuses any other.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from typing import Protocol

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")


class Embedder(Protocol):
    """A state-key embedder.

    Attributes:
        name: a stable identifier stored with the memory (change it when outputs change).
        dim: the vector dimension.
    """

    name: str
    dim: int

    def embed(self, text: str) -> np.ndarray:
        """Return a float32 vector of shape (dim,), unit L2 norm (or all zeros for empty text)."""
        ...


class HashedNgramEmbedder:
    """Signed hashed bag of tagged words and word bigrams.

    A state key ``location: L | inventory: I | score: S | observation`` is split on
    ``|``; each field's words get the field's tag (``loc:``, ``inv:``, ``score:``,
    ``obs:``) and weights (location 3, inventory 1.5, score 1, observation 1, with
    sublinear tf 1 + ln(tf)). Bigrams are hashed for the observation only.
    """

    name = "hash-ngram-v1"

    _FIELD_WEIGHTS = {"location": 3.0, "inventory": 1.5, "score": 1.0}

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError(f"embedding dimension must be >= 8, got {dim}")
        self.dim = dim

    def _features(self, text: str) -> Counter[str]:
        feats: Counter[str] = Counter()
        weights: dict[str, float] = {}
        for part in text.lower().split("|"):
            field, sep, value = part.partition(":")
            field = field.strip()
            if sep and field in self._FIELD_WEIGHTS:
                tag, weight = field[:3], self._FIELD_WEIGHTS[field]
                words = _WORD.findall(value)
                whole = " ".join(words)
                if whole:
                    key = f"{tag}={whole}"
                    feats[key] += 1
                    weights[key] = weight
                for w in words:
                    key = f"{tag}:{w}"
                    feats[key] += 1
                    weights[key] = weight / 2
            else:
                words = _WORD.findall(part)
                for w in words:
                    feats[f"obs:{w}"] += 1
                for a, b in zip(words, words[1:]):
                    feats[f"obs:{a}_{b}"] += 1
        for key in feats:
            feats[key] = (1.0 + math.log(feats[key])) * weights.get(key, 1.0)
        return feats

    def embed(self, text: str) -> np.ndarray:
        """Embed a state key: float32 array of shape (dim,), unit norm (zeros if no words)."""
        vec = np.zeros(self.dim, dtype=np.float32)
        for key, weight in self._features(text).items():
            h = zlib.crc32(key.encode("utf-8"))
            vec[h % self.dim] += weight if (h >> 31) & 1 else -weight
        norm = float(np.linalg.norm(vec))
        if norm > 0:
            vec /= norm
        return vec


_EMBEDDERS = {HashedNgramEmbedder.name: HashedNgramEmbedder}


def get_embedder(name: str = HashedNgramEmbedder.name, dim: int | None = None) -> Embedder:
    """Construct a registered embedder by name.

    Raises:
        ValueError: for an unknown embedder name.
    """
    try:
        cls = _EMBEDDERS[name]
    except KeyError:
        raise ValueError(f"unknown embedder {name!r}; known: {', '.join(sorted(_EMBEDDERS))}") from None
    return cls() if dim is None else cls(dim)
