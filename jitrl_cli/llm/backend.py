"""Where the prior comes from: a GGUF loaded in-process (the default), or an inference server.

:class:`Backend` is what the command line chose (``--model``, ``--n-ctx``, ``--n-gpu-layers`` or
``--server``, ``--server-model``, ``--server-api``); :meth:`Backend.open` gives the two objects the agent
uses, a model (``name``, ``n_ctx``, ``tokenize``, ``close``) and a scorer (``score(prompt, candidates,
prior)``, ``close``): :class:`jitrl_cli.llm.model.LlamaModel` with
:class:`jitrl_cli.llm.scoring.CandidateScorer`, or :class:`jitrl_cli.llm.server.ServerModel` with
:class:`jitrl_cli.llm.server.ServerScorer`. The math above them is the same.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jitrl_cli.errors import UserError
from jitrl_cli.llm.scoring import Prior, ScoreResult


class Model(Protocol):
    """What the agent needs of a model: its name, its context size and its tokenizer."""

    name: str
    n_ctx: int

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]: ...

    def close(self) -> None: ...


class Scorer(Protocol):
    """Prior log-probabilities of candidate token lists after a prompt (paper §4.1, eq. 2)."""

    def score(self, prompt: Any, candidates: Any, prior: Prior = Prior.sequence) -> ScoreResult: ...

    def reset(self, keep: Sequence[int] = ()) -> None:
        """Forget cached state (a prompt cache) but what ``keep`` (a prefix of the next prompts) alone gives, so
        that what follows does not depend on what came before."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backend:
    """The model backend of a run.

    Attributes:
        model: the GGUF file for in-process llama.cpp (resolved: :func:`jitrl_cli.llm.model.resolve_model_path`);
            None with a server.
        n_ctx: the context in tokens (in-process) or the prompt budget (server), 1024 to 262144.
        n_gpu_layers: layers llama.cpp offloads to a GPU (needs a CUDA or Metal build of llama-cpp-python).
        server: an inference server's base URL, or None for in-process.
        server_model: the served model's name (default: the first the server lists).
        server_api: ``openai``, ``sglang`` or ``llamacpp`` (:mod:`jitrl_cli.llm.server`).
    """

    model: Path | None = None
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    server: str | None = None
    server_model: str | None = None
    server_api: str = "openai"

    @classmethod
    def from_options(cls, model: str | os.PathLike | None, n_ctx: int, n_gpu_layers: int = 0, server: str | None = None,
                     server_model: str | None = None, server_api: str = "openai") -> "Backend":
        """The backend the options ask for (``--server`` wins over ``--model``; ``$JITRL_SERVER`` is read here).

        Raises:
            UserError: for an unknown ``--server-api``, a bad model file, or both ``--model`` and ``--server``.
        """
        from jitrl_cli.llm.model import resolve_model_path
        from jitrl_cli.llm.server import SERVER_APIS, SERVER_ENV

        server = server or os.environ.get(SERVER_ENV) or None
        if server_api not in SERVER_APIS:
            raise UserError(f"--server-api must be one of {', '.join(SERVER_APIS)}; got {server_api!r}")
        if server:
            if model:
                raise UserError("--model and --server exclude each other: the server's model is --server-model")
            return cls(None, n_ctx, n_gpu_layers, server, server_model, server_api)
        if n_gpu_layers < 0:
            raise UserError(f"--n-gpu-layers must be ≥ 0; got {n_gpu_layers}")
        return cls(resolve_model_path(model), n_ctx, n_gpu_layers)

    @property
    def model_name(self) -> str:
        """The name recorded in eval directories: the GGUF's file name, or ``<model>@<URL>`` (server)."""
        if self.server:
            return f"{self.server_model or 'server'}@{self.server}"
        assert self.model is not None
        return self.model.name

    def params(self) -> dict[str, Any]:
        """What a resumed eval must share: the model's name, and the server API when there is one."""
        return {"model": self.model_name} | ({"server_api": self.server_api} if self.server else {})

    def open(self) -> tuple[Model, Scorer]:
        """Load the model (or connect to the server) and make its scorer.

        Raises:
            UserError: a bad model file; ServerError: an unreachable or unsuitable server (one line each).
        """
        if self.server:
            from jitrl_cli.llm.server import ServerClient, ServerModel, ServerScorer

            client = ServerClient(self.server)
            try:
                model = ServerModel(client, self.server_api, self.server_model, self.n_ctx)
            except BaseException:
                client.close()
                raise
            return model, ServerScorer(model)
        from jitrl_cli.llm.model import LlamaModel
        from jitrl_cli.llm.scoring import CandidateScorer

        assert self.model is not None
        llm = LlamaModel(self.model, n_ctx=self.n_ctx, n_gpu_layers=self.n_gpu_layers)
        try:
            return llm, CandidateScorer(llm)
        except BaseException:
            llm.close()
            raise
