"""The memory on a read-only file system, without permission, after damage to the episodes table,
beside an index that disagrees with its rows, and the memory commands' output (issue 19, "Memory").

Everything is real: SQLite files, hnswlib indexes, the `jitrl` CLI in a subprocess. A read-only
file system is a read-only bind mount of the memory in a private mount namespace (`unshare -m`), so
nothing leaks into the machine's mounts; a permission error is the CLI run as root without the
capabilities that let root ignore file modes (`setpriv`), since tests run as root.
"""

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from memories.embedding import HashedNgramEmbedder
from memories.store import EpisodeRecord, MemoryStore, StepRecord
from tests.conftest import ROOT, run_cli

SIZES = (5, 6, 7, 8, 9, 9)  # 6 episodes, 44 steps


def _episode(emb, game, e, n, obs="x" * 2000):
    steps = []
    for t in range(n):
        key = f"location: room {t} | inventory: lamp | score: {t} | {game} episode {e} step {t}"
        steps.append(StepRecord(step=t, state_key=key, embedding=emb.embed(key), action=f"go {t % 3}",
                                reward=1.0, ret=float(n - t), score=float(t), world_hash=f"{game}-{e}-{t}",
                                observation=obs))
    return EpisodeRecord(uuid=f"{game}-{e:04d}", game=game, score=float(n - 1), steps=n, model="m.gguf",
                         params={"beta": 1.0}), steps


def _memory(mem, games=("zork1",), sizes=SIZES):
    emb = HashedNgramEmbedder()
    with MemoryStore(mem, emb) as store:
        for game in games:
            for e, n in enumerate(sizes):
                store.write_episode(*_episode(emb, game, e, n))
    return mem


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "memory.lock"}


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], proc.stderr
    return lines[0]


# -- a read-only file system ----------------------------------------------------------------
_RO_SCRIPT = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'


@pytest.fixture(scope="module")
def unshare_prefix():
    """The command prefix that runs a command with its first argument re-mounted read-only."""
    probe = Path(tempfile.mkdtemp(prefix="ro-probe-"))
    try:
        for prefix in (["unshare", "-m", "--propagation", "private"], ["unshare", "-r", "-m", "--propagation", "private"]):
            if shutil.which(prefix[0]) is None:
                break
            cmd = [*prefix, "sh", "-c", _RO_SCRIPT, "sh", str(probe), "sh", "-c", 'touch "$0"/x 2>/dev/null; test ! -e "$0"/x', str(probe)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if proc.returncode == 0 and not (probe / "x").exists():
                return prefix
        pytest.skip("cannot mount a read-only bind mount here (no `unshare -m` with mount rights)")
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _run_readonly(prefix, mem, *args, timeout=300):
    """Run the real CLI with the memory directory ``mem`` on a read-only file system."""
    cmd = [*prefix, "sh", "-c", _RO_SCRIPT, "sh", str(mem), sys.executable, "-m", "jitrl_cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          cwd=ROOT, env=dict(os.environ))


def test_read_only_memory_is_read_and_never_called_damaged(tmp_path, unshare_prefix):
    mem = _memory(tmp_path / "mem")
    before = _digest(mem)
    ro = lambda *args: _run_readonly(unshare_prefix, mem, *args, "--memory", str(mem))  # noqa: E731
    stats = ro("memory", "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    game = json.loads(stats.stdout)["games"][0]
    assert game["episodes"] == 6 and game["steps"] == 44 and game["index"]["count"] == 44
    for args in (["memory", "stats"], ["memory", "list"], ["memory", "inspect"], ["memory", "check"]):
        proc = ro(*args)
        assert proc.returncode == 0 and "zork1" in proc.stdout, (args, proc.stderr)
        assert "damaged" not in proc.stderr + proc.stdout and "rebuild" not in proc.stderr, (args, proc.stderr)
    step = ro("memory", "inspect", "--step", "1:2", "--json")
    assert step.returncode == 0, step.stderr
    assert json.loads(step.stdout)["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    dump = tmp_path / "dump.jsonl"
    export = ro("memory", "export", str(dump))
    assert export.returncode == 0 and "exported 6 episodes, 44 steps" in export.stdout, export.stderr
    # commands that write say so in one line, and never call a healthy memory damaged
    rebuild = ro("memory", "rebuild")
    line = _one_line_error(rebuild, "not writable", "read-only file system")
    assert "damaged" not in line
    play = ro("play", "zork1", "--max-steps", "1", "--json")
    assert "damaged" not in _one_line_error(play, str(mem), "not writable", "read-only file system")
    assert play.stdout == ""
    _one_line_error(ro("memory", "prune", "--keep-last", "1", "--yes"), "not writable")
    _one_line_error(ro("memory", "import", str(dump)), "not writable")
    assert _digest(mem) == before


_DIE_AFTER_WRITING = """
import os, sys
sys.path.insert(0, sys.argv[2])
from memories.embedding import HashedNgramEmbedder
from memories.store import MemoryStore
from tests.test_memory_reliability import _episode
store = MemoryStore(sys.argv[1], HashedNgramEmbedder())
store.write_episode(*_episode(store.embedder, "zork1", 99, 3))
os._exit(0)  # killed: the episode is committed in memory.sqlite-wal, never checkpointed into the file
"""


def test_read_only_memory_with_a_write_ahead_log_loses_nothing(tmp_path, unshare_prefix):
    mem = _memory(tmp_path / "mem")
    subprocess.run([sys.executable, "-c", _DIE_AFTER_WRITING, str(mem), str(ROOT)], check=True, cwd=ROOT, timeout=120)
    assert (mem / "memory.sqlite-wal").stat().st_size > 0
    proc = _run_readonly(unshare_prefix, mem, "memory", "list", "--json", "--memory", str(mem))
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["uuid"] for x in proc.stdout.splitlines()][-1] == "zork1-0099"


# -- permission ------------------------------------------------------------------------------
_NO_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search", "--"]


def _run_without_root_file_rights(*args):
    """Run the real CLI as a process that file modes apply to (root without CAP_DAC_*)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed: cannot drop root's right to ignore file modes")
    return subprocess.run([*_NO_DAC, sys.executable, "-m", "jitrl_cli", *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, cwd=ROOT, env=dict(os.environ))


def test_permission_errors_say_permission_not_damage(tmp_path):
    mem = _memory(tmp_path / "mem")
    db, index = mem / "memory.sqlite", mem / "index" / "zork1.hnsw"
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    if _run_without_root_file_rights("memory", "stats", "--memory", str(probe)).returncode == 0:
        pytest.skip("file modes do not apply even without CAP_DAC_OVERRIDE here")
    try:
        # another user's memory: readable, not writable — read commands work, writing ones say why not
        for path in (mem, mem / "index"):
            path.chmod(0o555)
        db.chmod(0o444)
        listed = _run_without_root_file_rights("memory", "list", "--json", "--memory", str(mem))
        assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 6, listed.stderr
        line = _one_line_error(_run_without_root_file_rights("memory", "rebuild", "--memory", str(mem)),
                               "not writable", "permission denied")
        assert "damaged" not in line
        # a database or index file that cannot be read at all
        db.chmod(0)
        for args in (["memory", "stats"], ["memory", "check"], ["memory", "rebuild"]):
            line = _one_line_error(_run_without_root_file_rights(*args, "--memory", str(mem)), "permission denied")
            assert "damaged" not in line and "rebuild" not in line, args
        db.chmod(0o644)
        index.chmod(0)
        line = _one_line_error(_run_without_root_file_rights("memory", "stats", "--memory", str(mem)),
                               "cannot read index file", "permission denied")
        assert "unreadable" not in line
    finally:
        for path in (mem, mem / "index"):
            path.chmod(0o755)
        db.chmod(0o644)
        index.chmod(0o644)
    assert run_cli("memory", "check", "--memory", str(mem)).returncode == 0


# -- salvage after damage to the episodes table ------------------------------------------------
def _page_size(db):
    return int.from_bytes(db.read_bytes()[16:18], "big")


def _root_page(db, table):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]


def _page_holding(db, text):
    data = db.read_bytes()
    at = data.index(text.encode())
    assert data.find(text.encode(), at + 1) == -1
    return at // _page_size(db) + 1


def _smash(db, page):
    """Overwrite page ``page`` (1-based) with random bytes."""
    size = _page_size(db)
    with open(db, "r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(np.random.default_rng(page).bytes(size))


def _stored_steps(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT e.game, s.step, s.state_key, s.action, s.ret FROM steps s JOIN episodes e"
                            " ON e.id = s.episode_id ORDER BY s.id").fetchall()


def test_salvage_rebuilds_episodes_whose_rows_are_lost_from_their_whole_steps(tmp_path):
    mem = _memory(tmp_path / "mem")
    db = mem / "memory.sqlite"
    original = _stored_steps(db)
    _smash(db, _root_page(db, "episodes"))
    _one_line_error(run_cli("memory", "list", "--memory", str(mem)), str(db), "jitrl memory rebuild")
    rebuilt = run_cli("memory", "rebuild", "--memory", str(mem))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "kept 6 whole episodes (6 rebuilt from their steps" in rebuilt.stdout and "and 44 steps" in rebuilt.stdout
    assert "lost 0 episodes (0 readable steps" in rebuilt.stdout and "zork1: indexed 44 steps" in rebuilt.stdout
    rows = [json.loads(x) for x in run_cli("memory", "list", "--json", "--memory", str(mem)).stdout.splitlines()]
    assert [r["steps"] for r in rows] == list(SIZES) and {r["game"] for r in rows} == {"zork1"}
    assert [r["score"] for r in rows] == [n - 1 for n in SIZES]  # the last step's score
    assert all(r["uuid"].startswith("salvaged-") and r["params"]["salvaged_from"].startswith("memory.sqlite.damaged-")
               for r in rows)
    assert _stored_steps(db) == original  # every step, in its episode and order
    assert run_cli("memory", "check", "--memory", str(mem)).returncode == 0


@pytest.mark.parametrize("lost_step, kept_steps", [((2, 3), 37), ((1, 5), 38)])
def test_salvage_counts_what_it_loses(tmp_path, lost_step, kept_steps):
    """Damage to the episodes table and to one step (in the middle, or the last one of an episode):
    that episode is lost and counted; the others are rebuilt whole."""
    mem = _memory(tmp_path / "mem")
    db = mem / "memory.sqlite"
    e, t = lost_step
    step_page = _page_holding(db, f"zork1 episode {e} step {t}")
    assert step_page != _root_page(db, "episodes")
    _smash(db, _root_page(db, "episodes"))
    _smash(db, step_page)
    rebuilt = run_cli("memory", "rebuild", "--memory", str(mem))
    assert rebuilt.returncode == 0, rebuilt.stderr
    left = SIZES[e] - 1
    assert f"kept 5 whole episodes (5 rebuilt from their steps" in rebuilt.stdout
    assert f"and {kept_steps} steps, lost 1 episodes ({left} readable steps of incomplete episodes" in rebuilt.stdout
    rows = [json.loads(x) for x in run_cli("memory", "list", "--json", "--memory", str(mem)).stdout.splitlines()]
    assert [r["steps"] for r in rows] == [n for i, n in enumerate(SIZES) if i != e]
    assert run_cli("memory", "check", "--memory", str(mem)).returncode == 0


# -- an index that disagrees with its rows -----------------------------------------------------
def test_index_of_another_game_is_rebuilt_when_opened(tmp_path):
    mem = _memory(tmp_path / "mem", games=("zork1", "detective"), sizes=(5, 6, 7))
    shutil.copyfile(mem / "index" / "detective.hnsw", mem / "index" / "zork1.hnsw")
    check = run_cli("memory", "check", "--memory", str(mem))
    assert check.returncode == 1 and "zork1: 18 rows, 18 indexed — 18 labels without rows" in check.stdout
    # a read-only command answers from the rows (in memory) and changes nothing
    before = _digest(mem)
    out = json.loads(run_cli("memory", "inspect", "--step", "1:2", "--json", "--no-exact-match", "--memory",
                             str(mem)).stdout)
    assert out["game"] == "zork1" and out["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert _digest(mem) == before
    # a writer (as `play` opens it) rebuilds and saves it
    emb = HashedNgramEmbedder()
    with MemoryStore(mem, emb) as store:
        zork_ids = {r[0] for r in store.read("SELECT id FROM steps WHERE game = 'zork1'")}
        index = store.index_for("zork1")
        assert set(index.get_ids_list()) == zork_ids and store.rebuilt_indexes == ["zork1"]
        key = "location: room 2 | inventory: lamp | score: 2 | zork1 episode 1 step 2"
        assert {h.id for h in store.query("zork1", emb.embed(key), k=10)} <= zork_ids
    with MemoryStore(mem, emb, writable=False) as store:
        assert store.check_index("zork1") == {"rows": 18, "indexed": 18, "missing": 0, "stale": 0}
    assert run_cli("memory", "check", "--memory", str(mem)).returncode == 0


def test_old_database_beside_newer_index_files_is_caught_up_by_the_next_writer(tmp_path):
    mem = _memory(tmp_path / "mem", sizes=(5, 6))
    old = tmp_path / "old.sqlite"
    shutil.copyfile(mem / "memory.sqlite", old)
    emb = HashedNgramEmbedder()
    with MemoryStore(mem, emb) as store:
        for e in range(2, 5):
            store.write_episode(*_episode(emb, "zork1", e, 7))
    shutil.copyfile(old, mem / "memory.sqlite")  # a restored backup beside the newer index
    assert run_cli("memory", "check", "--memory", str(mem)).returncode == 1
    record, steps = _episode(emb, "zork1", 7, 4)
    with MemoryStore(mem, emb) as store:  # what `play` does: open, write an episode, query
        store.write_episode(record, steps)
        assert store.index_for("zork1").get_current_count() == store.count_steps("zork1") == 15
        hit = store.query("zork1", steps[2].embedding, k=1)[0]
        assert hit.similarity == pytest.approx(1.0, abs=1e-5) and hit.state_key == steps[2].state_key
    check = json.loads(run_cli("memory", "check", "--json", "--memory", str(mem)).stdout)
    assert check["indexes"]["zork1"] == {"rows": 15, "indexed": 15, "missing": 0, "stale": 0}


@pytest.mark.slow
def test_play_rebuilds_an_index_copied_from_another_game(tmp_path):
    mem = _memory(tmp_path / "mem", games=("zork1", "detective"), sizes=(3, 4))
    shutil.copyfile(mem / "index" / "detective.hnsw", mem / "index" / "zork1.hnsw")
    proc = run_cli("play", "zork1", "--max-steps", "2", "--json", "--memory", str(mem))
    assert proc.returncode == 0, proc.stderr
    check = json.loads(run_cli("memory", "check", "--json", "--memory", str(mem)).stdout)
    zork = check["indexes"]["zork1"]
    assert zork["rows"] == 7 + json.loads(proc.stdout)["steps"] and zork["missing"] == zork["stale"] == 0


# -- the memory commands' output ---------------------------------------------------------------
@pytest.mark.parametrize("damage", ["sql_index_page", "not_sqlite"])
def test_check_on_a_damaged_database_exits_1_with_one_line_and_one_hint(tmp_path, damage):
    mem = _memory(tmp_path / "mem")
    db = mem / "memory.sqlite"
    if damage == "sql_index_page":  # quick_check answers in several lines
        with sqlite3.connect(db) as conn:
            page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'steps_by_game'").fetchone()[0]
        _smash(db, page)
    else:
        db.write_bytes(b"this is not a database" * 1000)
    check = run_cli("memory", "check", "--memory", str(mem))
    assert check.returncode == 1, (check.stdout, check.stderr)
    out = check.stdout.strip()
    assert "\n" not in out and str(db) in out and check.stderr == ""
    assert out.count("jitrl memory rebuild") == 1
    assert ("damaged" in out and "Page " in out) if damage == "sql_index_page" else "not a SQLite database" in out
    as_json = run_cli("memory", "check", "--json", "--memory", str(mem))
    assert as_json.returncode == 1 and str(db) in json.loads(as_json.stdout)["database"]
    if damage == "sql_index_page":
        rebuilt = run_cli("memory", "rebuild", "--memory", str(mem))  # the rows themselves are intact
        assert rebuilt.returncode == 0 and "kept 6 whole episodes and 44 steps, lost 0 episodes" in rebuilt.stdout
        assert run_cli("memory", "check", "--memory", str(mem)).returncode == 0


def test_check_on_a_damaged_index_file_exits_1(tmp_path):
    mem = _memory(tmp_path / "mem")
    index = mem / "index" / "zork1.hnsw"
    index.write_bytes(b"\0" * 100)
    check = run_cli("memory", "check", "--memory", str(mem))
    assert check.returncode == 1 and check.stderr == "", (check.stdout, check.stderr)
    assert check.stdout.count("\n") == 1 and str(index) in check.stdout and "jitrl memory rebuild" in check.stdout


def test_stats_json_of_an_empty_memory_is_json(tmp_path):
    MemoryStore(tmp_path / "mem", HashedNgramEmbedder()).close()
    proc = run_cli("memory", "stats", "--json", "--memory", str(tmp_path / "mem"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["games"] == [] and out["embedder"] == "hash-ngram-v1" and out["dim"] == 256


def test_an_export_cut_short_is_refused_unless_partial(tmp_path):
    mem = _memory(tmp_path / "mem", sizes=(3, 4))
    dump = tmp_path / "dump.jsonl.gz"
    assert run_cli("memory", "export", str(dump), "--memory", str(mem)).returncode == 0
    lines = gzip.open(dump, "rt").read().splitlines()
    assert json.loads(lines[0])["episodes"] == 2 and len(lines) == 3
    cut = tmp_path / "cut.jsonl.gz"
    with gzip.open(cut, "wt") as fh:
        fh.write("\n".join(lines[:2]) + "\n")
    other = tmp_path / "other"
    _one_line_error(run_cli("memory", "import", str(cut), "--memory", str(other)),
                    "header says 2 episodes and 7 steps, it holds 1 and 3", "--partial")
    assert not other.exists()
    partial = run_cli("memory", "import", str(cut), "--partial", "--memory", str(other))
    assert partial.returncode == 0 and "imported 1 new episodes (3 steps)" in partial.stdout, partial.stderr
    assert "warning:" in partial.stderr and "cut short" in partial.stderr
    full = run_cli("memory", "import", str(dump), "--memory", str(other))
    assert full.returncode == 0 and "imported 1 new episodes (4 steps)" in full.stdout and full.stderr == ""


@pytest.mark.parametrize("command", [["memory", "stats"], ["memory", "list"], ["memory", "rebuild"],
                                     ["memory", "check"], ["memory", "import", "x.jsonl"], ["play", "zork1"]])
def test_memory_that_is_a_file_is_a_one_line_error(tmp_path, command):
    path = tmp_path / "memory-file"
    path.write_text("not a directory")
    (tmp_path / "x.jsonl").write_text("")
    args = [a if a != "x.jsonl" else str(tmp_path / "x.jsonl") for a in command]
    _one_line_error(run_cli(*args, "--memory", str(path), "--max-steps", "1") if command[0] == "play"
                    else run_cli(*args, "--memory", str(path)), str(path), "is a file")
    assert path.read_text() == "not a directory"


def test_tables_are_not_cut_when_piped(tmp_path):
    emb = HashedNgramEmbedder()
    mem = tmp_path / "mem"
    model = "a-model-with-a-rather-long-name-Q4_K_M"
    with MemoryStore(mem, emb) as store:
        record, steps = _episode(emb, "zork1", 0, 3, obs="short")
        record.model = model + ".gguf"
        record.params = {"beta": 30.0, "gamma": 0.5, "k": 10, "min_similarity": 0.5, "temperature": 1.0,
                         "exploration": "paper-with-a-long-exploration-name"}
        store.write_episode(record, steps)
    listed = run_cli("memory", "list", "--memory", str(mem), env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    assert "β30 γ0.50 k10 s0.50 T1 paper-with-a-long-exploration-name" in listed.stdout
    assert model in listed.stdout and record.uuid in listed.stdout and "…" not in listed.stdout
    inspected = run_cli("memory", "inspect", "--step", "1:2", "--memory", str(mem), env={"COLUMNS": "80"})
    assert inspected.returncode == 0 and steps[2].state_key in inspected.stdout and "…" not in inspected.stdout


@contextlib.contextmanager
def _lock_held_by_another_process(lock_path):
    """A real second process holds the filelock at ``lock_path`` (up to 30 s) while the block runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1]); l.acquire(); "
         "print('held', flush=True); time.sleep(30)", str(lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_lock_held_too_long_is_a_one_line_error(tmp_path):
    """A writer waiting past the lock's timeout gets a MemoryStoreError (one line via the CLI), not filelock's Timeout."""
    from memories.files import MemoryStoreError, WriterLock

    lock_path = tmp_path / "memory.lock"
    with _lock_held_by_another_process(lock_path):
        with pytest.raises(MemoryStoreError, match=r"another jitrl process has held .*memory\.lock for 0\.2 s") as err:
            with WriterLock(str(lock_path), timeout=0.2):
                pass
        assert "\n" not in str(err.value)
    with WriterLock(str(lock_path), timeout=5):  # free again once the holder is gone
        pass


def test_salvage_waiting_past_the_writer_lock_is_a_one_line_error_and_moves_nothing(tmp_path):
    """`memory rebuild`'s salvage takes the same writer lock as every writer: held by another process past its
    timeout, it is a MemoryStoreError (not filelock's Timeout) and the damaged database stays where it was."""
    from memories.embedding import get_embedder
    from memories.files import MemoryStoreError
    from memories.repair import salvage_database

    mem = tmp_path / "mem"
    mem.mkdir()
    (mem / "memory.sqlite").write_bytes(b"not a database" * 10)
    with _lock_held_by_another_process(mem / "memory.lock"):
        with pytest.raises(MemoryStoreError, match=r"another jitrl process has held .*memory\.lock for 0\.2 s") as err:
            salvage_database(mem, get_embedder(), lock_timeout=0.2)
        assert "\n" not in str(err.value)
    assert sorted(p.name for p in mem.iterdir()) == ["memory.lock", "memory.sqlite"]
    assert (mem / "memory.sqlite").read_bytes() == b"not a database" * 10
