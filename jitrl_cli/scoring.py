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
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from jitrl_cli.llm import LlamaModel


@dataclass
class ScoreResult:
    """Prior log-probabilities of the candidates and what it cost.

    Attributes:
        logprobs: shape (n,), z_i = Σ_j log p(token_j), in nats.
        token_logprobs: per candidate, the log-probability of each of its tokens.
        prompt_tokens: length of the prompt in tokens.
        prompt_tokens_evaluated: prompt tokens actually decoded this call (not cached).
        candidate_tokens: Σ_i len(c^(i)), all candidate tokens including terminators.
        candidate_tokens_evaluated: trie nodes decoded (shared prefixes once, leaves never).
        logit_rows: positions for which the model computed output logits.
        seconds: wall time of the call.
    """

    logprobs: np.ndarray
    token_logprobs: list[list[float]] = field(default_factory=list)
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    candidate_tokens: int = 0
    candidate_tokens_evaluated: int = 0
    logit_rows: int = 0
    seconds: float = 0.0

    @property
    def tokens_evaluated(self) -> int:
        """Tokens decoded by the model this step (prompt + candidates)."""
        return self.prompt_tokens_evaluated + self.candidate_tokens_evaluated


class _Node:
    __slots__ = ("token", "depth", "children", "seqs", "logprob")

    def __init__(self, token: int, depth: int) -> None:
        self.token = token
        self.depth = depth
        self.children: dict[int, _Node] = {}
        self.seqs: list[int] = []  # sequences that continue below this node
        self.logprob = 0.0  # log p(token | ancestors)


def _log_softmax_row(ptr, n_vocab: int) -> np.ndarray:
    row = np.ctypeslib.as_array(ptr, shape=(n_vocab,))
    m = float(row.max())
    lse = m + float(np.log(np.exp(row - m).sum(dtype=np.float64)))
    return row.astype(np.float64) - lse


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
        return _log_softmax_row(self._lib.llama_get_logits_ith(self.model.ctx, i), self.model.n_vocab)

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

    def reset(self) -> None:
        """Forget the cached prompt (clears the whole KV cache)."""
        self._lib.llama_memory_clear(self.model.memory, True)
        self._cached = []

    def _sync_prompt(self, prompt: Sequence[int]) -> tuple[int, np.ndarray]:
        """Make sequence 0 hold ``prompt``; returns (tokens evaluated, log-softmax at its end)."""
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
                last_row = self._row(len(chunk) - 1)
        self._cached = list(prompt)
        assert last_row is not None
        return len(todo), last_row

    # -- public --------------------------------------------------------------------------
    def score(self, prompt: Sequence[int], candidates: Sequence[Sequence[int]]) -> ScoreResult:
        """Prior log-probabilities of ``candidates`` (token lists) as continuations of ``prompt``.

        Args:
            prompt: prompt token ids (BOS included if the model uses one), length P ≥ 1.
            candidates: n non-empty token lists.

        Returns:
            a :class:`ScoreResult` with ``logprobs`` of shape (n,).

        Raises:
            ValueError: on an empty prompt/candidate, or a prompt + candidate longer than the context.
            RuntimeError: if llama.cpp fails to decode.
        """
        t0 = time.perf_counter()
        if any(len(c) == 0 for c in candidates):
            raise ValueError("empty candidate")
        longest = max((len(c) for c in candidates), default=0)
        if len(prompt) + longest > self.model.n_ctx:
            raise ValueError(f"prompt ({len(prompt)}) + candidate ({longest}) tokens exceed the context {self.model.n_ctx}")
        evaluated, root_row = self._sync_prompt(prompt)
        P = len(prompt)
        n = len(candidates)
        token_lps: list[list[float]] = [[] for _ in range(n)]
        cand_evaluated = 0
        rows = 1
        mem = self.model.memory
        for g0 in range(0, n, self._group):
            group = list(range(g0, min(n, g0 + self._group)))
            root = _Node(-1, 0)
            paths: dict[int, list[_Node]] = {}
            for slot, ci in enumerate(group):
                seq = slot + 1
                node, path = root, []
                toks = candidates[ci]
                for j, tok in enumerate(toks):
                    child = node.children.get(tok)
                    if child is None:
                        child = node.children[tok] = _Node(tok, j + 1)
                    if j < len(toks) - 1:
                        child.seqs.append(seq)
                    path.append(child)
                    node = child
                paths[ci] = path
            for tok, child in root.children.items():
                child.logprob = float(root_row[tok])
            # breadth-first list of internal nodes (those with children); parents precede children
            internal, frontier = [], [c for c in root.children.values()]
            while frontier:
                nxt = []
                for node in frontier:
                    if node.children:
                        internal.append(node)
                        nxt.extend(node.children.values())
                frontier = nxt
            seqs_used = sorted({s for node in internal for s in node.seqs})
            for s in seqs_used:
                self._lib.llama_memory_seq_cp(mem, 0, s, -1, -1)
            try:
                for start in range(0, len(internal), self.model.n_batch):
                    chunk = internal[start : start + self.model.n_batch]
                    self.decode([(nd.token, P + nd.depth - 1, nd.seqs, True) for nd in chunk])
                    for i, nd in enumerate(chunk):
                        row = self._row(i)
                        for tok, child in nd.children.items():
                            child.logprob = float(row[tok])
                cand_evaluated += len(internal)
                rows += len(internal)
            finally:
                for s in seqs_used:
                    self._lib.llama_memory_seq_rm(mem, s, -1, -1)
            for ci in group:
                token_lps[ci] = [nd.logprob for nd in paths[ci]]
        logprobs = np.array([sum(t) for t in token_lps], dtype=np.float64)
        return ScoreResult(
            logprobs=logprobs,
            token_logprobs=token_lps,
            prompt_tokens=P,
            prompt_tokens_evaluated=evaluated,
            candidate_tokens=sum(len(c) for c in candidates),
            candidate_tokens_evaluated=cand_evaluated,
            logit_rows=rows,
            seconds=time.perf_counter() - t0,
        )

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
                        lps[-1].append(float(self._row(i)[cand[pos - first_read]]))
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
