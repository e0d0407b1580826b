"""Transcript-style prompts for a base model, built incrementally so the KV cache is reused.

The prompt is the game's own transcript::

    <bos>{header}\n\n{first observation}\n\n> {action}\n{observation}\n\n> {action} ...\n\n>

Candidates are scored as `` {action}\\n``. Every piece is tokenised once and appended,
so the next step's prompt extends the previous one token-for-token: only the chosen
action and the new observation are new to the model.

With a history window of H turns the transcript shows only the last H actions and the
observations they led to, after the observation that preceded them; H = 0 shows the current
observation alone. A window trades the cache reuse (each step re-evaluates everything after
the header) for a prompt without the earlier actions, which a small model otherwise copies.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_BLANKS = re.compile(r"\n{3,}")


def clean_for_prompt(observation: str) -> str:
    """Observation text with runs of blank lines collapsed and outer whitespace stripped."""
    return _BLANKS.sub("\n\n", observation.replace("\r", "")).strip()


def candidate_text(action: str) -> str:
    """The continuation scored for an action: a space, the action, a newline terminator."""
    return f" {action.strip()}\n"


class TranscriptPrompt:
    """A transcript prompt as token ids: append-only, or a window of the last turns (``history``).

    Args:
        tokenize: ``tokenize(text, add_bos) -> list[int]``.
        header: a one-paragraph description of the transcript (the game's name).
        max_tokens: budget; when exceeded, the oldest turns are dropped (one re-evaluation).
        history: H, the earlier actions shown before the current observation (None: all that fit
            the budget; 0: none, the prompt is the header and the current observation).

    Raises:
        ValueError: ``history`` below 0.
    """

    def __init__(self, tokenize: Callable[[str, bool], list[int]], header: str, max_tokens: int,
                 history: int | None = None) -> None:
        if history is not None and history < 0:
            raise ValueError(f"history must be >= 0 or None, got {history}")
        self._tokenize = tokenize
        self.max_tokens = max_tokens
        self.history = history
        self._head = tokenize(header.strip() + "\n\n", True)
        # (action tokens, observation tokens) per turn; the first turn's action is never shown (empty)
        self._turns: list[tuple[list[int], list[int]]] = []

    def start(self, observation: str) -> None:
        """Begin an episode with its first observation."""
        self._turns = [([], self._tokenize(clean_for_prompt(observation) + "\n\n>", False))]

    def append(self, action_tokens: list[int], observation: str) -> None:
        """Add the chosen action's scored tokens and the observation that followed."""
        self._turns.append((list(action_tokens), self._tokenize(clean_for_prompt(observation) + "\n\n>", False)))
        if self.history is not None:
            # the observation before the oldest shown action, then H (action, observation) turns, within the budget
            del self._turns[: -(self.history + 1)]
            while len(self._turns) > 1 and self._length() - len(self._turns[0][0]) > self.max_tokens:
                self._turns.pop(0)
            self._turns[0] = ([], self._turns[0][1])
            return
        total = self._length()
        if total > self.max_tokens:
            # drop the oldest turns down to half the budget: one re-evaluation, then append-only again
            while len(self._turns) > 1 and total > self.max_tokens // 2:
                action, obs = self._turns.pop(0)
                total -= len(action) + len(obs)

    def _length(self) -> int:
        return len(self._head) + sum(len(action) + len(obs) for action, obs in self._turns)

    @property
    def head(self) -> list[int]:
        """The header's token ids: the prefix of every prompt of every episode."""
        return list(self._head)

    def tokens(self) -> list[int]:
        """The current prompt's token ids (BOS first if the model uses one)."""
        out = list(self._head)
        for action, obs in self._turns:
            out.extend(action)
            out.extend(obs)
        return out

    def candidate_tokens(self, action: str) -> list[int]:
        """Token ids of a candidate's continuation (see :func:`candidate_text`)."""
        return self._tokenize(candidate_text(action), False)
