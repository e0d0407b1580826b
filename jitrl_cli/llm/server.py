"""The prior from an inference server: vLLM, SGLang or llama.cpp's servers, over HTTP (httpx + tenacity).

The agent's math does not change: a candidate's prior logit is z_i = Σ_j log p(c^(i)_j | x, c^(i)_{<j})
(paper §4.1, eq. 2), the same sum the in-process :class:`jitrl_cli.llm.scoring.CandidateScorer` computes;
only who evaluates the model differs. Three protocols (``--server-api``):

* ``openai``: ``POST /v1/completions`` with ``echo: true, logprobs: 1, max_tokens: 1, temperature: 0``
  (vLLM, llama-cpp-python's server, any OpenAI-compatible server that echoes prompt log-probs). The reply
  holds one log-probability per echoed token; a candidate's are the last ``len(c)`` before the generated
  token, located by counting from the end (servers differ on whether BOS is echoed) and checked against
  ``text_offset``: the located tokens must spell exactly the candidate's text. Token ids are sent where the
  server takes them (vLLM: all candidates of a step in one request, a list of prompts), else text
  (llama-cpp-python's server: one request per candidate, sent concurrently).
* ``sglang``: SGLang's native ``POST /generate`` with ``input_ids`` (a batch: one per candidate),
  ``return_logprob: true`` and ``logprob_start_len`` at the end of the shared transcript (its last token), so its radix
  cache reuses the prompt and only the candidates' tokens are scored.
* ``llamacpp``: llama.cpp's native ``llama-server``, ``POST /completion``. It echoes no prompt log-probs, so
  each candidate is *generated*: a grammar of token-id literals forces exactly the candidate's tokens,
  ``n_probs`` returns the log-probability of each forced token under the model's full distribution (before
  the grammar; ``post_sampling_probs`` off), and ``cache_prompt`` keeps the transcript in the server's KV
  cache, so a candidate costs ``len(c)`` decode steps.

The ``constrained`` prior needs no more from the server: at every prefix the candidates allow, each allowed
next token's full-vocabulary log-probability is already known from the candidate that continues with it, so
the renormalisation over the allowed tokens (:func:`jitrl_cli.llm.scoring.constrain`) is exact.

Faults become :class:`ServerError` (a :class:`jitrl_cli.errors.UserError`: one line naming the URL and
what to check). Transient ones (connection refused or reset, timeouts, 429/502/503/504) are retried with
exponential backoff first.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import tenacity

from jitrl_cli.errors import UserError
from jitrl_cli.llm.scoring import Prior, ScoreResult, constrain

SERVER_ENV = "JITRL_SERVER"
SERVER_APIS = ("openai", "sglang", "llamacpp")
TRANSIENT_STATUS = frozenset({408, 429, 502, 503, 504})
#: Seconds a reply may take (llama-cpp-python's server ranks the whole vocabulary for every echoed token).
READ_TIMEOUT = float(os.environ.get("JITRL_SERVER_TIMEOUT") or 600)
RETRIES = int(os.environ.get("JITRL_SERVER_RETRIES") or 5)


class ServerError(UserError):
    """The inference server is unreachable, failed, timed out, or replied without what the prior needs."""


class _Transient(Exception):
    """A fault worth retrying (wraps the httpx error or the reply)."""


class ServerClient:
    """An HTTP client for one inference server, with retries for transient faults.

    Args:
        url: the server's base URL (``http://host:port``; a trailing ``/v1`` is dropped).
        retries: tries before a transient fault becomes a :class:`ServerError`.
        read_timeout: seconds a reply may take.
    """

    def __init__(self, url: str, retries: int = RETRIES, read_timeout: float = READ_TIMEOUT) -> None:
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--server {url!r} must be an http:// or https:// URL")
        self.url = url.removesuffix("/v1")
        self.retries = max(1, retries)
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(read_timeout, connect=5.0),
                                  limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None,
                missing_ok: bool = False) -> Any:
        """Send one request and return its JSON reply (None for a 404 when ``missing_ok``).

        Raises:
            ServerError: one line, after ``retries`` tries for transient faults, at once for others
                (4xx/5xx, a reply that is not JSON).
        """
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries),
            wait=tenacity.wait_exponential_jitter(multiplier=0.25, max=4.0),
            retry=tenacity.retry_if_exception_type(_Transient), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(method, path, payload, missing_ok)
        except _Transient as exc:
            cause = exc.args[0]
            if isinstance(cause, httpx.Response):
                raise ServerError(f"server {self.url}{path} answered {cause.status_code} {_reason(cause)} "
                                  f"{self.retries} times; check that it is up and not overloaded") from None
            raise ServerError(f"server {self.url} {_describe(cause)} after {self.retries} tries; check that it is "
                              "running and the URL (--server, $JITRL_SERVER)") from None
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, payload: dict[str, Any] | None, missing_ok: bool) -> Any:
        try:
            reply = self._http.request(method, path, json=payload)
        except httpx.TransportError as exc:  # connect/read errors and timeouts
            raise _Transient(exc) from exc
        if reply.status_code in TRANSIENT_STATUS:
            raise _Transient(reply)
        if reply.status_code == 404 and missing_ok:
            return None
        if reply.status_code >= 400:
            raise ServerError(f"server {self.url}{path} answered {reply.status_code} {_reason(reply)}; check "
                              "--server-api and --server-model")
        try:
            return reply.json()
        except ValueError:
            raise ServerError(f"server {self.url}{path} replied with something that is not JSON; check --server-api") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "is unreachable (connection refused)"
    return f"dropped the connection ({type(exc).__name__})"


def _reason(reply: httpx.Response) -> str:
    """The server's own error message, on one line, cut to 160 characters."""
    try:
        body = reply.json()
        msg = body.get("error", body) if isinstance(body, dict) else body
        msg = msg.get("message", msg) if isinstance(msg, dict) else msg
        text = str(msg)
    except ValueError:
        text = reply.text
    text = " ".join(text.split())[:160]
    return f"({text})" if text else f"({reply.reason_phrase})"


class ServerModel:
    """The server's model as the agent sees it: a name, a prompt budget and the server's tokenizer.

    Tokenising goes through the server (so the tokens are the served model's), cached per text: a
    transcript's pieces are tokenised once each.

    Args:
        client: the server.
        api: ``openai``, ``sglang`` or ``llamacpp``.
        model: the served model's name (``--server-model``); default: the first the server lists.
        n_ctx: the prompt budget in tokens (the agent keeps its prompt under ``n_ctx − 512``).

    Raises:
        ServerError: if the server is unreachable, lists no model, or has no tokenizer endpoint.
    """

    def __init__(self, client: ServerClient, api: str, model: str | None, n_ctx: int) -> None:
        self.client = client
        self.api = api
        self.n_ctx = n_ctx
        self.model_id = model or self._first_model()
        self._tokenize_path = self._find_tokenizer()
        self._bos_prefix = self._raw_tokenize("", special=True)[:1] if self._tokenize_path else []
        self.add_bos = bool(self._bos_prefix)
        self.bos = self._bos_prefix[0] if self._bos_prefix else -1

    @property
    def name(self) -> str:
        """``<model>@<server URL>``, recorded with each episode."""
        return f"{os.path.basename(self.model_id.rstrip('/')) or self.model_id}@{self.client.url}"

    def _first_model(self) -> str:
        if self.api == "llamacpp":
            props = self.client.request("GET", "/props", missing_ok=True) or {}
            return str(props.get("model_alias") or props.get("model_path") or "llama-server")
        if self.api == "sglang":
            info = self.client.request("GET", "/get_model_info", missing_ok=True) or {}
            if info.get("model_path"):
                return str(info["model_path"])
        listed = self.client.request("GET", "/v1/models", missing_ok=True) or {}
        data = listed.get("data") or []
        if not data:
            raise ServerError(f"server {self.client.url} lists no model at /v1/models; pass --server-model")
        return str(data[0]["id"])

    def _find_tokenizer(self) -> str:
        candidates = {"llamacpp": ["/tokenize"], "sglang": ["/tokenize"], "openai": ["/tokenize", "/extras/tokenize"]}[self.api]
        for path in candidates:
            if self._post_tokenize(path, "a", special=False) is not None:
                return path
        raise ServerError(f"server {self.client.url} has no tokenizer endpoint ({' or '.join(candidates)}); "
                          "jitrl needs the served model's tokens (check --server-api)")

    def _post_tokenize(self, path: str, text: str, special: bool) -> list[int] | None:
        if path == "/extras/tokenize":  # llama-cpp-python: always with BOS
            reply = self.client.request("POST", path, {"input": text}, missing_ok=True)
        elif self.api == "llamacpp":
            reply = self.client.request("POST", path, {"content": text, "add_special": special}, missing_ok=True)
        else:  # vLLM, SGLang
            reply = self.client.request("POST", path, {"model": self.model_id, "prompt": text,
                                                       "add_special_tokens": special}, missing_ok=True)
        if reply is None:
            return None
        tokens = reply.get("tokens")
        if not isinstance(tokens, list):
            raise ServerError(f"server {self.client.url}{path} replied without tokens; check --server-api")
        return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]

    def _raw_tokenize(self, text: str, special: bool) -> list[int]:
        tokens = self._post_tokenize(self._tokenize_path, text, special)
        assert tokens is not None
        if self._tokenize_path == "/extras/tokenize" and not special and self._bos_prefix:
            if tokens[:1] == self._bos_prefix:
                tokens = tokens[1:]
        return tokens

    @functools.lru_cache(maxsize=8192)
    def _cached(self, text: str) -> tuple[int, ...]:
        return tuple(self._raw_tokenize(text, special=False))

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of ``text`` (no special tokens parsed); BOS prepended if asked and the model uses one.

        Raises:
            ServerError: if the server fails.
        """
        tokens = list(self._cached(text))
        return ([self.bos] if add_bos and self.add_bos else []) + tokens

    @functools.lru_cache(maxsize=8192)
    def detokenize_piece(self, tokens: tuple[int, ...]) -> str:
        """The text of ``tokens`` (cached), from the server's detokenizer."""
        if self.api == "openai" and self._tokenize_path == "/extras/tokenize":
            reply = self.client.request("POST", "/extras/detokenize", {"tokens": list(tokens)})
            return str(reply["text"])
        path, body = ("/detokenize", {"tokens": list(tokens)}) if self.api == "llamacpp" else (
            "/detokenize", {"model": self.model_id, "tokens": list(tokens)})
        reply = self.client.request("POST", path, body)
        return str(reply.get("content", reply.get("prompt", "")))

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


class ServerScorer:
    """Prior log-probabilities of candidate actions from an inference server (module docstring).

    Same interface as :class:`jitrl_cli.llm.scoring.CandidateScorer`: ``score(prompt, candidates, prior)``.

    Args:
        model: the :class:`ServerModel` (client, API, tokenizer).
        concurrency: requests in flight at once where a step needs several.
    """

    def __init__(self, model: ServerModel, concurrency: int = 16) -> None:
        self.model = model
        self.client = model.client
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="jitrl-server")
        self._openai_ids: bool | None = None  # does the server take token ids (and lists of prompts)?
        self.last_server_ms: float | None = None

    def reset(self, keep: Sequence[int] = ()) -> None:
        """Nothing to forget on this side (the server's prefix caches are its own)."""

    def close(self) -> None:
        """Stop the request threads (the model closes the client)."""
        self._pool.shutdown(wait=True)

    def score(self, prompt: Sequence[int], candidates: Sequence[Sequence[int]],
              prior: Prior = Prior.sequence) -> ScoreResult:
        """Prior log-probabilities of ``candidates`` (token lists) as continuations of ``prompt``.

        Args:
            prompt: prompt token ids (BOS first if the model uses one), length P ≥ 1.
            candidates: n ≥ 1 non-empty token lists.
            prior: ``sequence`` (eq. 2) or ``constrained`` (:func:`jitrl_cli.llm.scoring.constrain`).

        Returns:
            a :class:`ScoreResult`; ``logprobs`` shape (n,), in nats; ``server_ms`` the server's own
            compute where it reports it (llama-server), else None.

        Raises:
            ValueError: on an empty prompt or candidate.
            ServerError: if the server fails or its reply lacks the log-probabilities.
        """
        t0 = time.perf_counter()
        if not prompt or any(len(c) == 0 for c in candidates):
            raise ValueError("empty prompt or candidate")
        self.last_server_ms = None
        if self.model.api == "openai":
            token_lps = self._openai(prompt, candidates)
        elif self.model.api == "sglang":
            token_lps = self._sglang(prompt, candidates)
        else:
            token_lps = self._llamacpp(prompt, candidates)
        if prior is Prior.constrained:
            token_lps = constrain(candidates, token_lps)
        return ScoreResult(
            logprobs=np.array([sum(t) for t in token_lps], dtype=np.float64), token_logprobs=token_lps,
            prompt_tokens=len(prompt), candidate_tokens=sum(len(c) for c in candidates),
            seconds=time.perf_counter() - t0, server_ms=self.last_server_ms)

    # -- openai ------------------------------------------------------------------------------------------
    def _openai(self, prompt: Sequence[int], candidates: Sequence[Sequence[int]]) -> list[list[float]]:
        if self._openai_ids is not False:
            body = self._openai_body([list(prompt) + list(c) for c in candidates])
            try:
                reply = self.client.request("POST", "/v1/completions", body)
                self._openai_ids = True
                return [self._openai_candidate(choice, None, c) for choice, c in
                        zip(_choices(reply, len(candidates), self.client.url), candidates)]
            except ServerError:
                if self._openai_ids:  # worked before: a real fault
                    raise
                self._openai_ids = False  # a text-only server (llama-cpp-python's): send text from now on
        text = self.model.detokenize_piece(tuple(prompt[1:] if self.model.add_bos and prompt[:1] == [self.model.bos] else prompt))
        texts = [self.model.detokenize_piece(tuple(c)) for c in candidates]

        def one(i: int) -> list[float]:
            reply = self.client.request("POST", "/v1/completions", self._openai_body(text + texts[i]))
            (choice,) = _choices(reply, 1, self.client.url)
            return self._openai_candidate(choice, texts[i], candidates[i])

        return list(self._pool.map(one, range(len(candidates))))

    def _openai_body(self, prompt: Any) -> dict[str, Any]:
        return {"model": self.model.model_id, "prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 1,
                "temperature": 0}

    def _openai_candidate(self, choice: dict[str, Any], cand_text: str | None, cand: Sequence[int]) -> list[float]:
        """The candidate's token log-probabilities in one echoed choice, counted from the end and checked."""
        return openai_candidate_logprobs(choice, len(cand), cand_text if cand_text is not None
                                         else self.model.detokenize_piece(tuple(cand)), self.client.url)

    # -- sglang ------------------------------------------------------------------------------------------
    def _sglang(self, prompt: Sequence[int], candidates: Sequence[Sequence[int]]) -> list[list[float]]:
        body = sglang_body(prompt, candidates)
        reply = self.client.request("POST", "/generate", body)
        return sglang_candidate_logprobs(reply, prompt, candidates, self.client.url)

    # -- llama.cpp's llama-server ------------------------------------------------------------------------
    def _llamacpp(self, prompt: Sequence[int], candidates: Sequence[Sequence[int]]) -> list[list[float]]:
        def one(cand: Sequence[int]) -> tuple[list[float], float]:
            reply = self.client.request("POST", "/completion", llamacpp_body(prompt, cand))
            return llamacpp_candidate_logprobs(reply, cand, self.client.url)

        first = one(candidates[0])  # fills the server's prompt cache before the others arrive
        rest = list(self._pool.map(one, candidates[1:]))
        self.last_server_ms = sum(ms for _, ms in [first, *rest])
        return [lps for lps, _ in [first, *rest]]


def _choices(reply: Any, n: int, url: str) -> list[dict[str, Any]]:
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list) or len(choices) != n:
        raise ServerError(f"server {url}/v1/completions replied with {len(choices or [])} choices for {n} prompts")
    return sorted(choices, key=lambda c: int(c.get("index", 0)))


def openai_candidate_logprobs(choice: dict[str, Any], m: int, cand_text: str, url: str) -> list[float]:
    """The log-probabilities of the last ``m`` prompt tokens of an echoed ``/v1/completions`` choice.

    The echoed tokens are the prompt's (BOS or not) then the generated ones (≤ 1 here); the candidate's
    ``m`` tokens are counted from the end, before the generated ones, which are found from
    ``text_offset``: the tokens starting at or after the end of prompt + candidate text.

    Args:
        choice: one element of ``choices`` (with ``text`` and ``logprobs``: ``token_logprobs``, ``text_offset``).
        m: the candidate's length in tokens.
        cand_text: the candidate's text; the located tokens must spell exactly it.
        url: the server, for the error message.

    Returns:
        m log-probabilities, in nats.

    Raises:
        ServerError: if the reply has no prompt log-probabilities, or the located tokens are not the candidate.
    """
    lp = choice.get("logprobs") or {}
    token_lps, offsets, text = lp.get("token_logprobs"), lp.get("text_offset"), choice.get("text")
    if not token_lps or not offsets or not isinstance(text, str):
        raise ServerError(f"server {url} echoed no prompt log-probabilities (it must support echo with logprobs; "
                          "vLLM: --max-logprobs ≥ 1, llama-cpp-python: --logits_all true)")
    n = len(token_lps)
    for gen in (1, 0):  # max_tokens 1: one generated token, or none if the server stopped at once
        first = n - gen - m
        if first < 0 or any(v is None for v in token_lps[first:n - gen]):
            continue
        stop = offsets[n - gen] if gen else len(text)
        if text[offsets[first]:stop] == cand_text:
            return [float(v) for v in token_lps[first:n - gen]]
    found = text[offsets[max(0, n - 1 - m)]:offsets[n - 1]] if n > m else text
    raise ServerError(f"server {url} echoed tokens that do not spell the candidate {cand_text.strip()!r} at the end "
                      f"of the prompt ({found!r}): it tokenised it differently; check --server-model")


def sglang_body(prompt: Sequence[int], candidates: Sequence[Sequence[int]]) -> dict[str, Any]:
    """The ``/generate`` request scoring ``candidates`` after ``prompt`` in one batch.

    ``logprob_start_len`` is the prompt's length − 1: the reply's ``input_token_logprobs`` begin at the prompt's
    last token, whose entry SGLang always leaves ``None``, then one per candidate token (its radix cache holds
    the shared prompt once). ``max_new_tokens: 0``: prefill only.
    """
    return {"input_ids": [list(prompt) + list(c) for c in candidates],
            "sampling_params": {"max_new_tokens": 0, "temperature": 0},
            "return_logprob": True, "logprob_start_len": max(0, len(prompt) - 1)}


def sglang_candidate_logprobs(reply: Any, prompt: Sequence[int], candidates: Sequence[Sequence[int]],
                              url: str) -> list[list[float]]:
    """Each candidate's token log-probabilities from a batched ``/generate`` reply (a list, one per input).

    ``meta_info.input_token_logprobs`` is a list of ``[logprob, token_id, text]`` for ``input_ids[logprob_start_len:]``
    (its first entry's log-probability is always ``None``); the candidate's are the last ``len(c)``, and their token
    ids must be the candidate's.

    Raises:
        ServerError: if the reply is not one object per candidate with the log-probabilities.
    """
    items = reply if isinstance(reply, list) else [reply]
    if len(items) != len(candidates):
        raise ServerError(f"server {url}/generate replied with {len(items)} results for {len(candidates)} inputs")
    out = []
    for item, cand in zip(items, candidates):
        entries = ((item or {}).get("meta_info") or {}).get("input_token_logprobs")
        if not entries or len(entries) < len(cand):
            raise ServerError(f"server {url}/generate replied without input_token_logprobs; check --server-api sglang "
                              "(SGLang's native /generate)")
        tail = entries[-len(cand):]
        ids = [int(e[1]) for e in tail]
        if ids != list(cand) or any(e[0] is None for e in tail):
            raise ServerError(f"server {url}/generate scored other tokens than the candidate's ({ids} vs {list(cand)})")
        out.append([float(e[0]) for e in tail])
    return out


def llamacpp_body(prompt: Sequence[int], cand: Sequence[int]) -> dict[str, Any]:
    """The llama-server ``/completion`` request that generates exactly ``cand`` after ``prompt``.

    The grammar is a sequence of token-id literals (``<[id]>``, llama.cpp's GBNF token syntax), so the sampler
    can only write the candidate's tokens; ``n_probs: 1`` returns each written token's log-probability under
    the model's full distribution (``post_sampling_probs`` off: before the grammar and the samplers).
    """
    grammar = "root ::= " + " ".join(f"<[{t}]>" for t in cand)
    return {"prompt": list(prompt), "n_predict": len(cand), "grammar": grammar, "n_probs": 1,
            "temperature": 0, "cache_prompt": True, "post_sampling_probs": False, "stream": False}


def llamacpp_candidate_logprobs(reply: Any, cand: Sequence[int], url: str) -> tuple[list[float], float]:
    """The forced tokens' log-probabilities from a ``/completion`` reply, and the server's own milliseconds.

    Raises:
        ServerError: if the reply lacks ``completion_probabilities`` or wrote other tokens than ``cand``.
    """
    probs = (reply or {}).get("completion_probabilities") if isinstance(reply, dict) else None
    if not probs or len(probs) != len(cand):
        raise ServerError(f"server {url}/completion replied without {len(cand)} completion_probabilities; "
                          "check --server-api llamacpp (llama.cpp's llama-server)")
    ids = [int(p.get("id", -1)) for p in probs]
    if ids != list(cand):
        raise ServerError(f"server {url}/completion wrote other tokens than the candidate's ({ids} vs {list(cand)}); "
                          "its grammar support may be too old for token-id literals")
    lps = [float(p["logprob"]) if "logprob" in p else float(np.log(max(p["prob"], 1e-45))) for p in probs]
    timings = reply.get("timings") or {}
    return lps, float(timings.get("prompt_ms", 0.0)) + float(timings.get("predicted_ms", 0.0))


def describe_reply(reply: Any) -> str:
    """A short JSON rendering of a reply, for debugging messages."""
    return json.dumps(reply)[:200]
