"""The JitRL logit update: the closed-form KL-regularised policy improvement.

Paper, Theorem 4.1: the maximiser of E_{π'}[A(s,a)] − (1/β)·KL(π'‖π) over
distributions π' is π'(a|s) ∝ π(a|s)·exp(β·A(s,a)). On logits this is
z'(a) = z(a)/T + β·Ã(a), where T is the prior's temperature and Ã the
normalised advantage.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis; shape preserved."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; shape preserved, rows sum to 1."""
    return np.exp(log_softmax(logits))


def posterior_logits(
    prior_logits: np.ndarray, advantages: np.ndarray, beta: float, temperature: float = 1.0
) -> np.ndarray:
    """z'(a) = z(a)/T + β·Ã(a) (paper Theorem 4.1).

    Args:
        prior_logits: shape (n,), the prior logits z(a) (log-probabilities, nats).
        advantages: shape (n,), the (normalised) advantages Ã(a).
        beta: β ≥ 0, the inverse KL-regularisation strength. β = 0 returns the prior.
        temperature: T > 0 of the prior.

    Returns:
        shape (n,) posterior logits.

    Raises:
        ValueError: on mismatched shapes, negative β or non-positive T.
    """
    prior_logits = np.asarray(prior_logits, dtype=np.float64)
    advantages = np.asarray(advantages, dtype=np.float64)
    if prior_logits.shape != advantages.shape:
        raise ValueError(f"shape mismatch: logits {prior_logits.shape} vs advantages {advantages.shape}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return prior_logits / temperature + beta * advantages


def choose_action(posterior: np.ndarray, rng: np.random.Generator, greedy: bool = False) -> int:
    """Index of the chosen action: a ~ softmax(z'), or argmax z' when ``greedy``.

    Args:
        posterior: shape (n,), n ≥ 1, posterior logits.
        rng: numpy random generator (seeded by the caller for reproducibility).
        greedy: take the argmax instead of sampling.

    Raises:
        ValueError: on an empty candidate set.
    """
    posterior = np.asarray(posterior, dtype=np.float64)
    if posterior.size == 0:
        raise ValueError("no candidate actions to choose from")
    if greedy:
        return int(np.argmax(posterior))
    return int(rng.choice(posterior.size, p=softmax(posterior)))
