"""The prior: log-probabilities of every candidate action under the LLM, computed efficiently.

For a prompt x and candidate actions c^(1..n) (token lists, each ending with a
terminator such as a newline), the prior logit of candidate i is

    z_i = log p(c^(i) | x) = Σ_j log p(c^(i)_j | x, c^(i)_{<j})          (paper §4.1, eq. 2)

Cost model (this is what makes a step fast):

* **Prompt prefix reuse.** Sequence 0 of the KV cache holds the last prompt. A new
  prompt only evaluates the tokens after the longest common prefix.
* **Candidate trie.** Candidates are merged into a token trie; each trie node is
  evaluated once, in one batch, as a token that belongs to every candidate sequence
  passing through it (llama.cpp sequence ids share the copied prompt cells, so the
  prompt is not re-evaluated per candidate). Leaves (the terminators) are never
  evaluated: their probabilities are read from their parent's logits.
* **Logits only where read.** Output logits are requested for the prompt's last
  token and for internal trie nodes only (Gemma's vocabulary has 262,144 entries).

Two priors (:class:`Prior`):

* ``sequence`` (above): the probability that the unconstrained model writes the candidate.
  Every internal trie node needs a full-vocabulary logit row for its log-softmax, and each
  row is a product with the whole output matrix (bench/RESULTS.md: ≥ 1.63× the prefill
  limit on Gemma 3 270M for that alone).
* ``constrained``: the probability that decoding *constrained to the candidates* (a grammar
  that allows only the candidate strings, as llama.cpp's grammar sampler does) writes it:

      z_i = Σ_j log [ p(c^(i)_j | x, c^(i)_{<j}) / Σ_{t ∈ C(x, c^(i)_{<j})} p(t | x, c^(i)_{<j}) ]

  where C(·) is the set of next tokens some candidate allows after that prefix (its trie
  children). A node with one child contributes log 1 = 0, so only *branching* nodes need
  logits, and a token is decoded only if a branching node lies at or below it. The
  normaliser is over the allowed tokens, so the full-vocabulary log-sum-exp is never needed.
  exp(z) sums to 1 over the candidates. Exact: no logit is approximated. A lone candidate has
  z = 0 whatever the model says, so nothing is decoded: the prompt's new tokens wait in the
  cache's diff and are evaluated with the next call's (a larger, cheaper batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from jitrl_cli.llm.model import LlamaModel


class Prior(str, Enum):
    """How a candidate's prior logit z_i is read from the model's token logits (module docstring)."""

    sequence = "sequence"  # log p(c | x), full-vocabulary log-softmax at every token (paper §4.1, eq. 2)
    constrained = "constrained"  # log-probability under decoding constrained to the candidates


@dataclass
class ScoreResult:
    """Prior log-probabilities of the candidates and what it cost.

    Attributes:
        logprobs: shape (n,), z_i = Σ_j log p(token_j), in nats (under the :class:`Prior` used).
        token_logprobs: per candidate, the log-probability of each of its tokens (0 for a token that
            is the only one the candidates allow after its prefix, under the constrained prior).
        prompt_tokens: length of the prompt in tokens.
        prompt_tokens_evaluated: prompt tokens actually decoded this call (not cached).
        candidate_tokens: Σ_i len(c^(i)), all candidate tokens including terminators.
        candidate_tokens_evaluated: trie nodes decoded (shared prefixes once, leaves never; under the
            constrained prior only nodes at or above a branching node).
        logit_rows: positions for which the model computed output logits.
        seconds: wall time of the call.
        server_ms: the inference server's own compute for the call, where it reports it
            (:mod:`jitrl_cli.llm.server`); None in-process.
    """

    logprobs: np.ndarray
    token_logprobs: list[list[float]] = field(default_factory=list)
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    candidate_tokens: int = 0
    candidate_tokens_evaluated: int = 0
    logit_rows: int = 0
    seconds: float = 0.0
    server_ms: float | None = None

    @property
    def tokens_evaluated(self) -> int:
        """Tokens decoded by the model this step (prompt + candidates)."""
        return self.prompt_tokens_evaluated + self.candidate_tokens_evaluated


class _Node:
    __slots__ = ("token", "depth", "prefix", "children", "seqs")

    def __init__(self, token: int, prefix: tuple[int, ...]) -> None:
        self.token = token
        self.depth = len(prefix)
        self.prefix = prefix  # the candidate tokens up to and including this node's
        self.children: dict[int, _Node] = {}
        self.seqs: list[int] = []  # sequences that continue below this node


def _logsumexp(values: np.ndarray) -> float:
    m = float(values.max())
    return m + float(np.log(np.exp(values - m).sum(dtype=np.float64)))


def child_logprobs(row: np.ndarray, allowed: Sequence[int], prior: Prior) -> list[float]:
    """Log-probabilities of the next tokens ``allowed`` after a prefix, from the prefix's logit row.

    Args:
        row: shape (n_vocab,), the raw output logits after the prefix.
        allowed: every next token some candidate allows after the prefix (distinct ids).
        prior: ``sequence``: log-softmax over the whole vocabulary; ``constrained``: log-softmax over
            ``allowed`` only (module docstring).

    Returns:
        one log-probability per token of ``allowed``, in nats.
    """
    lse = _logsumexp(row) if prior is Prior.sequence else _logsumexp(row[list(allowed)].astype(np.float64))
    return [float(row[t]) - lse for t in allowed]


def _allowed_next_tokens(candidates: Sequence[Sequence[int]]) -> dict[tuple[int, ...], list[int]]:
    """Every proper prefix of the candidates → the distinct next tokens the candidates allow after it,
    in order of first appearance (the root prefix is ``()``)."""
    allowed: dict[tuple[int, ...], list[int]] = {}
    for toks in candidates:
        for j in range(len(toks)):
            nxt = allowed.setdefault(tuple(toks[:j]), [])
            if toks[j] not in nxt:
                nxt.append(toks[j])
    return allowed


def constrain(candidates: Sequence[Sequence[int]], token_logprobs: Sequence[Sequence[float]]) -> list[list[float]]:
    """The constrained prior's token log-probabilities from the sequence prior's (module docstring).

    At every prefix the candidates allow, the full-vocabulary log-probability of each allowed next token is
    known from a candidate that continues with it (candidates sharing a prefix share its distribution), so

        log p_C(c_j | prefix) = log p(c_j | prefix) − log Σ_{t ∈ C(prefix)} p(t | prefix)

    is exact, with no other logit needed. Used by the server backends, which return per-token log-probs.

    Args:
        candidates: n token lists.
        token_logprobs: per candidate, log p(c_j | x, c_{<j}) for each of its tokens, in nats (the sequence prior).

    Returns:
        per candidate, its tokens' log-probabilities under decoding constrained to the candidates (0 where only
        one token is allowed); their sums' exponentials add up to 1 over the distinct candidates.
    """
    seen: dict[tuple[int, ...], dict[int, float]] = {}
    for toks, lps in zip(candidates, token_logprobs):
        for j, (tok, lp) in enumerate(zip(toks, lps)):
            seen.setdefault(tuple(toks[:j]), {}).setdefault(tok, float(lp))
    norm = {pfx: _logsumexp(np.fromiter(nxt.values(), dtype=np.float64)) for pfx, nxt in seen.items()}
    return [[0.0 if len(seen[tuple(toks[:j])]) == 1 else float(lp) - norm[tuple(toks[:j])]
             for j, (tok, lp) in enumerate(zip(toks, lps))] for toks, lps in zip(candidates, token_logprobs)]


def _build_trie(candidates: Sequence[Sequence[int]], group: Sequence[int]) -> _Node:
    """The token trie of the candidates with indices ``group``; candidate ``group[k]`` is KV sequence k + 1,
    recorded on every node below which it continues (its leaf, the last token, records none)."""
    root = _Node(-1, ())
    for slot, ci in enumerate(group):
        seq = slot + 1
        node = root
        toks = candidates[ci]
        for j, tok in enumerate(toks):
            child = node.children.get(tok)
            if child is None:
                child = node.children[tok] = _Node(tok, tuple(toks[: j + 1]))
            if j < len(toks) - 1:
                child.seqs.append(seq)
            node = child
    return root


def _nodes_to_decode(root: _Node, known: dict[tuple[int, ...], dict[int, float]]) -> tuple[list[_Node], set[int]]:
    """Which internal nodes of a trie to decode, and which of them need a logit row.

    Returns:
        (nodes, wanted): the internal nodes (with children) in breadth-first order (parents before children)
        that need a row, because the log-probabilities after their prefix are not ``known`` yet, or lie above
        such a node; and the ``id()`` of those that need the row.
    """
    internal, frontier = [], list(root.children.values())
    while frontier:
        nxt_level = []
        for node in frontier:
            if node.children:
                internal.append(node)
                nxt_level.extend(node.children.values())
        frontier = nxt_level
    wanted = {id(nd) for nd in internal if nd.prefix not in known}
    needed = set(wanted)
    for nd in reversed(internal):  # children before parents: a node is needed above a needed one
        if any(id(c) in needed for c in nd.children.values()):
            needed.add(id(nd))
    return [nd for nd in internal if id(nd) in needed], wanted


class CandidateScorer:
    """Scores candidate continuations of a prompt with one llama.cpp context.

    Args:
        model: the loaded model; its context must have ``kv_unified`` and ``n_seq_max`` ≥ 2.
    """

    def __init__(self, model: LlamaModel) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.model = model
        self._cached: list[int] = []  # tokens held by sequence 0
        self._kept: list[int] = []  # the prefix :meth:`reset` keeps (evaluated alone on an empty cache)
        self._batch = llama_cpp.llama_batch_init(model.n_batch, 0, model.n_seq_max)
        self._group = max(1, model.n_seq_max - 1)

    def close(self) -> None:
        """Free the batch buffer."""
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- low level -----------------------------------------------------------------------
    def decode(self, entries: Sequence[tuple[int, int, Sequence[int], bool]]) -> None:
        """Decode one batch of (token, position, sequence ids, want_logits) entries (low level: the scorer's own
        building block, public for benchmarks that time single ``llama_decode`` calls).

        Raises:
            RuntimeError: if llama.cpp fails to decode (the KV cache is then cleared).
        """
        b = self._batch
        for i, (tok, pos, seqs, want) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = len(seqs)
            for j, s in enumerate(seqs):
                b.seq_id[i][j] = s
            b.logits[i] = 1 if want else 0
        b.n_tokens = len(entries)
        rc = self._lib.llama_decode(self.model.ctx, b)
        if rc != 0:
            self.reset()
            raise RuntimeError(f"llama_decode failed with code {rc} (context of {self.model.n_ctx} tokens full?)")

    def _row(self, i: int) -> np.ndarray:
        """The raw logits at entry ``i`` of the last decoded batch (one that asked for them), shape (n_vocab,)
        (a view: valid until the next decode)."""
        return np.ctypeslib.as_array(self._lib.llama_get_logits_ith(self.model.ctx, i), shape=(self.model.n_vocab,))

    def truncate(self, n_tokens: int) -> int:
        """Drop every KV cell of sequence 0 from position ``n_tokens`` on (also cells written by :meth:`decode`).

        Returns:
            the tokens of the cached prompt kept: ``n_tokens``, or 0 if llama.cpp could not remove a
            partial range (the whole cache is then cleared).
        """
        if not self._lib.llama_memory_seq_rm(self.model.memory, 0, n_tokens, -1):
            self.reset()
            return 0
        self._cached = self._cached[:n_tokens]
        return n_tokens

    def reset(self, keep: Sequence[int] = ()) -> None:
        """Forget the cached prompt, except ``keep``: a prefix that the next prompts start with (the transcript's
        header).

        Afterwards the KV cache holds exactly what evaluating ``keep`` alone on an empty cache gives. That
        evaluation happens once; later resets with the same ``keep`` cut the cache back to it. So what is scored
        next depends on ``keep`` alone, not on what was scored before, and an episode does not re-evaluate its
        header (about 2 s per MiniWoB episode for the 370-token header on one core).
        """
        keep = list(keep)
        if keep and keep == self._kept and self._cached[: len(keep)] == keep and self.truncate(len(keep)) == len(keep):
            return
        self._lib.llama_memory_clear(self.model.memory, True)
        self._cached = []
        self._kept = keep
        if keep:
            self._sync_prompt(keep)

    def _sync_prompt(self, prompt: Sequence[int]) -> tuple[int, np.ndarray]:
        """Make sequence 0 hold ``prompt``; returns (tokens evaluated, a copy of the raw logits at its end)."""
        if not prompt:
            raise ValueError("empty prompt")
        common = 0
        limit = min(len(self._cached), len(prompt) - 1)  # always re-evaluate ≥ 1 token for logits
        while common < limit and self._cached[common] == prompt[common]:
            common += 1
        if common < len(self._cached):
            common = self.truncate(common)
        todo = list(prompt[common:])
        n_batch = self.model.n_batch
        last_row = None
        for start in range(0, len(todo), n_batch):
            chunk = todo[start : start + n_batch]
            is_last = start + n_batch >= len(todo)
            entries = [
                (tok, common + start + i, (0,), is_last and i == len(chunk) - 1) for i, tok in enumerate(chunk)
            ]
            self.decode(entries)
            if is_last:
                last_row = self._row(len(chunk) - 1).copy()
        self._cached = list(prompt)
        assert last_row is not None
        return len(todo), last_row

    # -- public --------------------------------------------------------------------------
    def score(self, prompt: Sequence[int], candidates: Sequence[Sequence[int]],
              prior: Prior = Prior.sequence) -> ScoreResult:
        """Prior log-probabilities of ``candidates`` (token lists) as continuations of ``prompt``.

        Args:
            prompt: prompt token ids (BOS included if the model uses one), length P ≥ 1.
            candidates: n non-empty, distinct token lists. Under the constrained prior a candidate
                must end with a terminator no other candidate continues past (the prompt's
                ``candidate_tokens`` end with a newline), or its prefix would absorb it.
            prior: how the logits become the prior (:class:`Prior`, module docstring).

        Returns:
            a :class:`ScoreResult` with ``logprobs`` of shape (n,).

        Raises:
            ValueError: on an empty prompt/candidate, or a prompt + candidate longer than the context.
            RuntimeError: if llama.cpp fails to decode.
        """
        t0 = time.perf_counter()
        self._check_fits(prompt, candidates)
        if prior is Prior.constrained and len(candidates) == 1:  # probability 1: nothing to evaluate
            return ScoreResult(logprobs=np.zeros(1), token_logprobs=[[0.0] * len(candidates[0])],
                               prompt_tokens=len(prompt), candidate_tokens=len(candidates[0]),
                               seconds=time.perf_counter() - t0)
        evaluated, root_row = self._sync_prompt(prompt)
        allowed = _allowed_next_tokens(candidates)
        # prefix → {allowed next token: its log-probability}, read once per prefix (the first group that
        # decodes a prefix shared by several groups reads it for all, so the groups agree exactly)
        known: dict[tuple[int, ...], dict[int, float]] = {}

        def read(prefix: tuple[int, ...], row: np.ndarray) -> None:
            known[prefix] = dict(zip(allowed[prefix], child_logprobs(row, allowed[prefix], prior)))

        read((), root_row)
        if prior is Prior.constrained:  # the only allowed next token has probability 1: no row needed
            known.update({pfx: {nxt[0]: 0.0} for pfx, nxt in allowed.items() if len(nxt) == 1})
        cand_evaluated, rows = 0, 1
        for g0 in range(0, len(candidates), self._group):
            root = _build_trie(candidates, range(g0, min(len(candidates), g0 + self._group)))
            internal, wanted = _nodes_to_decode(root, known)
            rows += self._decode_nodes(internal, wanted, len(prompt), read)
            cand_evaluated += len(internal)
        token_lps = [[known[tuple(toks[:j])][tok] for j, tok in enumerate(toks)] for toks in candidates]
        return ScoreResult(
            logprobs=np.array([sum(t) for t in token_lps], dtype=np.float64),
            token_logprobs=token_lps,
            prompt_tokens=len(prompt),
            prompt_tokens_evaluated=evaluated,
            candidate_tokens=sum(len(c) for c in candidates),
            candidate_tokens_evaluated=cand_evaluated,
            logit_rows=rows,
            seconds=time.perf_counter() - t0,
        )

    def _check_fits(self, prompt: Sequence[int], candidates: Sequence[Sequence[int]]) -> None:
        """Raise ValueError for an empty candidate, or a prompt + longest candidate longer than the context."""
        if any(len(c) == 0 for c in candidates):
            raise ValueError("empty candidate")
        longest = max((len(c) for c in candidates), default=0)
        if len(prompt) + longest > self.model.n_ctx:
            raise ValueError(f"prompt ({len(prompt)}) + candidate ({longest}) tokens exceed the context {self.model.n_ctx}")

    def _decode_nodes(self, internal: Sequence[_Node], wanted: set[int], prompt_len: int,
                      read: Callable[[tuple[int, ...], np.ndarray], None]) -> int:
        """Decode the trie nodes ``internal`` (parents first) after the cached prompt of ``prompt_len`` tokens.

        Each node is one batch entry at position ``prompt_len + depth − 1`` in the sequences of the candidates
        through it (copies of sequence 0, removed again afterwards, also on failure); for the nodes in ``wanted``
        (``id()`` of the node) the logit row is passed to ``read(prefix, row)``.

        Returns:
            the number of logit rows read.

        Raises:
            RuntimeError: if llama.cpp fails to decode.
        """
        mem = self.model.memory
        rows = 0
        seqs_used = sorted({s for node in internal for s in node.seqs})
        for s in seqs_used:
            self._lib.llama_memory_seq_cp(mem, 0, s, -1, -1)
        try:
            for start in range(0, len(internal), self.model.n_batch):
                chunk = internal[start : start + self.model.n_batch]
                self.decode([(nd.token, prompt_len + nd.depth - 1, nd.seqs, id(nd) in wanted) for nd in chunk])
                for i, nd in enumerate(chunk):
                    if id(nd) in wanted:
                        read(nd.prefix, self._row(i))
                        rows += 1
        finally:
            for s in seqs_used:
                self._lib.llama_memory_seq_rm(mem, s, -1, -1)
        return rows

    def score_sequential(self, prompt: Sequence[int], candidates: Sequence[Sequence[int]]) -> ScoreResult:
        """The naive baseline: each candidate scored alone from an empty KV cache.

        Evaluates prompt + candidate (minus its last token) per candidate, with logits at
        the positions read. Same return type as :meth:`score`; used as the reference in
        tests and as the "before" in ``bench/scoring.py``. Clears the prompt cache.
        """
        t0 = time.perf_counter()
        P = len(prompt)
        lps: list[list[float]] = []
        evaluated = 0
        for cand in candidates:
            self.reset()
            seq = list(prompt) + list(cand[:-1])
            first_read = P - 1
            for start in range(0, len(seq), self.model.n_batch):
                chunk = seq[start : start + self.model.n_batch]
                self.decode([(tok, start + i, (0,), start + i >= first_read) for i, tok in enumerate(chunk)])
                for i in range(len(chunk)):
                    pos = start + i
                    if pos == first_read:
                        lps.append([])
                    if pos >= first_read:
                        tok = cand[pos - first_read]
                        lps[-1].append(child_logprobs(self._row(i), [tok], Prior.sequence)[0])
            evaluated += len(seq)
        self.reset()
        return ScoreResult(
            logprobs=np.array([sum(t) for t in lps]),
            token_logprobs=lps,
            prompt_tokens=P,
            prompt_tokens_evaluated=P * len(candidates),
            candidate_tokens=sum(len(c) for c in candidates),
            candidate_tokens_evaluated=evaluated - P * len(candidates),
            logit_rows=sum(len(c) for c in candidates),
            seconds=time.perf_counter() - t0,
        )
