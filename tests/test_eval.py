"""`jitrl eval` / `jitrl report`: a real tiny run, interrupted and resumed; the summary's arithmetic."""

import json
import time

import numpy as np
import pytest

from jitrl_cli.runs.evaluation import reconcile_memory
from jitrl_cli.runs.report import summarize
from memories.embedding import HashedNgramEmbedder
from memories.store import EpisodeRecord, MemoryStore, StepRecord
from tests.conftest import kill_when_logged, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _eval_args(out):
    return ["eval", "zork1", "--episodes", "2", "--max-steps", "5", "--arms", "jitrl,static", "--seeds", "1",
            "--out", str(out), "--json"]


def _logs(out):
    return {p.stem: [json.loads(x) for x in p.read_text().splitlines()] for p in sorted((out / "episodes").glob("*.jsonl"))}


@pytest.mark.slow
def test_tiny_eval_is_resumable_and_writes_summary_and_png(tmp_path):
    out = tmp_path / "eval"
    # start, and kill the whole process group as soon as the first episode is logged
    kill_when_logged([*_eval_args(out)], out / "episodes" / "jitrl-seed0.jsonl")
    partial = _logs(out)
    assert 1 <= sum(len(v) for v in partial.values()) < 4 and not (out / "summary.json").exists()

    done = run_cli(*_eval_args(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    logs = _logs(out)
    assert set(logs) == {"jitrl-seed0", "static-seed0"}
    for name, rows in logs.items():
        assert [r["episode"] for r in rows] == [1, 2]  # nothing replayed, nothing missing
        assert rows[: len(partial.get(name, []))] == partial.get(name, [])  # finished episodes kept as they were
        assert all(r["steps"] == 5 and r["arm"] == name.split("-")[0] for r in rows)
    # the jitrl arm's memory holds exactly its logged episodes; the static arm has none
    with MemoryStore(out / "memory" / "jitrl-seed0", HashedNgramEmbedder(), writable=False) as store:
        uuids = {r[0] for r in store.read("SELECT uuid FROM episodes")}
    assert uuids == {r["uuid"] for r in logs["jitrl-seed0"]}
    assert not (out / "memory" / "static-seed0").exists()
    assert logs["static-seed0"][1]["params"]["beta"] == 0 and logs["jitrl-seed0"][1]["retrieval_steps"] > 0

    assert set(summary["arms"]) == {"jitrl", "static"} and summary["arms"]["jitrl"]["episodes"] == 2
    assert json.loads((out / "summary.json").read_text())["arms"] == summary["arms"]
    png = (out / "curve.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    import matplotlib.pyplot as plt

    assert plt.imread(out / "curve.png").shape[0] > 100

    # re-running a finished eval plays nothing; `report` re-renders the same summary and the plot
    before = (out / "episodes" / "jitrl-seed0.jsonl").read_bytes()
    t0 = time.monotonic()
    again = run_cli(*_eval_args(out))
    assert again.returncode == 0 and (out / "episodes" / "jitrl-seed0.jsonl").read_bytes() == before
    (out / "curve.png").unlink()
    rep = run_cli("report", str(out), "--json")
    assert rep.returncode == 0 and json.loads(rep.stdout)["arms"] == summary["arms"]
    assert (out / "curve.png").read_bytes().startswith(PNG_MAGIC)
    assert "jitrl" in run_cli("report", str(out)).stdout
    # other settings in the same directory are refused
    other = run_cli(*[a if a != "5" else "6" for a in _eval_args(out)])
    assert other.returncode == 2 and "holds a run with other settings (max_steps)" in other.stderr
    assert time.monotonic() - t0 < 120

    # the killed-and-resumed run is the run an uninterrupted one plays: same actions, returns and scores
    # (a seed replays exactly on one machine; episode 2 retrieves episode 1's steps, so memory is in it).
    # Tokens evaluated may differ: a process reuses the previous episode's cached prompt prefix.
    fresh = tmp_path / "uninterrupted"
    assert run_cli(*_eval_args(fresh)).returncode == 0
    replay = ("episode", "score", "steps", "retrieval_steps", "initial_return")
    assert {n: [[r[k] for k in replay] for r in rows] for n, rows in _logs(fresh).items()} == \
        {n: [[r[k] for k in replay] for r in rows] for n, rows in logs.items()}
    assert _stored_steps(fresh) == _stored_steps(out)

    # more seeds on a finished eval play only the new seed; the stored seed's logs stay as they were
    before = {p.name: p.read_bytes() for p in (fresh / "episodes").glob("*.jsonl")}
    more = run_cli(*[a if a != "1" else "2" for a in _eval_args(fresh)])
    assert more.returncode == 0, more.stderr
    assert {p.name: p.read_bytes() for p in (fresh / "episodes").glob("*-seed0.jsonl")} == before
    assert set(_logs(fresh)) == {"jitrl-seed0", "static-seed0", "jitrl-seed1", "static-seed1"}
    assert json.loads(more.stdout)["arms"]["jitrl"]["seeds"] == [0, 1]


def _stored_steps(out):
    """[(episode number, step, action, return G)] of an eval's jitrl-seed0 memory, episodes numbered 1, 2, … in order
    (row ids differ where a resume deleted an unlogged episode)."""
    with MemoryStore(out / "memory" / "jitrl-seed0", HashedNgramEmbedder(), writable=False) as store:
        rows = store.read("SELECT episode_id, step, action, ret FROM steps ORDER BY id")
    number = {e: i for i, e in enumerate(dict.fromkeys(r[0] for r in rows), start=1)}
    return [(number[e], step, action, round(ret, 9)) for e, step, action, ret in rows]


def _write_log(path, arm, seed, scores, max_score=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"arm": arm, "seed": seed, "episode": e + 1, "score": s, "max_score": max_score, "uuid": f"{arm}{seed}{e}",
             "seconds_per_step_median": 0.1} for e, s in enumerate(scores)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_summary_arithmetic(tmp_path):
    _write_log(tmp_path / "episodes" / "jitrl-seed0.jsonl", "jitrl", 0, [0, 10, 20])
    _write_log(tmp_path / "episodes" / "jitrl-seed1.jsonl", "jitrl", 1, [10, 20, 40])
    _write_log(tmp_path / "episodes" / "static-seed0.jsonl", "static", 0, [5, 5, 5, 5])  # one more episode
    with open(tmp_path / "episodes" / "static-seed0.jsonl", "a") as fh:
        fh.write('{"arm": "static", "torn')  # a torn last line (killed mid-write) is ignored
    s = summarize(tmp_path)["arms"]
    j = s["jitrl"]
    # every std is the sample std over seeds (ddof=1): two seeds a, b give |a − b| / sqrt(2)
    assert j["curve_mean"] == [5, 15, 30] and j["curve_std"] == pytest.approx([10 / 2**0.5, 10 / 2**0.5, 20 / 2**0.5])
    assert j["final"] == {"mean": 30, "std": pytest.approx(20 / 2**0.5)} and j["best"] == 40
    assert j["average"]["mean"] == pytest.approx(50 / 3) and j["average"]["std"] == pytest.approx((70 / 3 - 10) / 2**0.5)
    assert j["last10"]["mean"] == pytest.approx(50 / 3)
    assert j["auc"] == pytest.approx(((5 + 15) / 2 + (15 + 30) / 2) / 2)
    assert j["normalized"] == pytest.approx(50 / 3 / 100) and j["auc_normalized"] == pytest.approx(j["auc"] / 100)
    assert s["static"]["episodes"] == 4 and s["static"]["auc"] == 5 and s["static"]["curve_std"] == [0] * 4
    missing = run_cli("report", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no eval directory" in missing.stderr


def test_resume_deletes_memory_episodes_that_were_never_logged(tmp_path):
    emb = HashedNgramEmbedder()
    with MemoryStore(tmp_path / "mem", emb) as store:
        for uid in ("a", "b", "c"):
            store.write_episode(EpisodeRecord(uuid=uid, game="g", score=0, steps=1),
                                [StepRecord(step=0, state_key=uid, embedding=emb.embed(f"location: {uid}"), action="x", reward=0, ret=0)])
        assert reconcile_memory(store, [{"uuid": "a"}, {"uuid": "b"}]) == 1
        assert {r[0] for r in store.read("SELECT uuid FROM episodes")} == {"a", "b"}
        assert store.index_for("g").get_current_count() == 2
        q = store.query("g", emb.embed("location: c"), k=5)
        assert len(q) == 2 and np.isfinite(q[0].similarity)


def test_compressed_eval_directory_reports_the_same_summary(tmp_path):
    import gzip
    import shutil

    from jitrl_cli.runs.evaluation import read_episodes

    plain = tmp_path / "plain"
    (plain / "episodes").mkdir(parents=True)
    (plain / "run.json").write_text(json.dumps({"game": "zork1", "episodes": 3, "seeds": 2}))
    _write_log(plain / "episodes" / "jitrl-seed0.jsonl", "jitrl", 0, [0, 10, 20])
    _write_log(plain / "episodes" / "jitrl-seed1.jsonl", "jitrl", 1, [10, 20, 40])
    _write_log(plain / "episodes" / "static-seed0.jsonl", "static", 0, [5, 5, 5])
    packed = tmp_path / "packed"
    shutil.copytree(plain, packed)
    for log in sorted((packed / "episodes").glob("*.jsonl")):  # as `gzip -9` leaves them
        log.with_name(log.name + ".gz").write_bytes(gzip.compress(log.read_bytes(), compresslevel=9))
        log.unlink()
    summaries = []
    for out in (plain, packed):
        done = run_cli("report", str(out), "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert json.loads(done.stdout) == summary and (out / "curve.png").read_bytes().startswith(PNG_MAGIC)
        summaries.append({k: v for k, v in summary.items() if k not in ("out", "plot")})
    assert summaries[0] == summaries[1] and set(summaries[1]["arms"]) == {"jitrl", "static"}
    assert not list((packed / "episodes").glob("*.jsonl"))  # reporting leaves the compressed logs as they are
    # a resumed run appends to the plain log: reading it for repair restores it from the compressed copy
    log = packed / "episodes" / "static-seed0.jsonl"
    assert read_episodes(log, repair=True) == read_episodes(plain / "episodes" / "static-seed0.jsonl")
    assert log.read_bytes() == (plain / "episodes" / "static-seed0.jsonl").read_bytes()
    assert not log.with_name(log.name + ".gz").exists()


def test_bad_eval_input_is_one_line(tmp_path):
    for args, message in [
        (["eval", "zork1", "--arms", "jitrl,greedy", "--out", str(tmp_path / "o")], "--arms must be a comma list"),
        (["eval", "zork1", "--seeds", "0", "--out", str(tmp_path / "o")], "must be at least 1"),
        (["eval", "nosuchgame", "--out", str(tmp_path / "o")], "unknown game"),
        (["eval", "zork1", "--prior", "greedy", "--out", str(tmp_path / "o")], "--prior must be sequence or constrained"),
        (["eval", "zork1", "--state-hash", "tree", "--out", str(tmp_path / "o")], "--state-hash must be jericho, unordered or local"),
        (["eval", "--suite", "miniwob", "--tasks", "click-button", "--state-hash", "unordered", "--out", str(tmp_path / "o")],
         "--state-hash applies to games only"),
    ]:
        proc = run_cli(*args)
        assert proc.returncode == 2 and proc.stderr.startswith("error:") and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_run_file_written_before_a_setting_existed_still_resumes(tmp_path):
    from jitrl_cli.errors import UserError
    from jitrl_cli.runs.evaluation import ADDED_SETTINGS, check_run_file

    params = {"game": "zork1", "episodes": 2, "beta": 30.0, **ADDED_SETTINGS}
    old = {k: v for k, v in params.items() if k not in ADDED_SETTINGS}  # a run.json from before those options
    (tmp_path / "run.json").write_text(json.dumps(old))
    check_run_file(tmp_path, params, force=False)  # the same run: resumes, and records the settings
    assert json.loads((tmp_path / "run.json").read_text()) == params
    (tmp_path / "run.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match=r"other settings \(prior\)"):
        check_run_file(tmp_path, params | {"prior": "constrained"}, force=False)
    assert json.loads((tmp_path / "run.json").read_text()) == old  # a refused resume leaves run.json alone
    # more seeds add to a stored run; fewer are other settings
    check_run_file(tmp_path, params | {"seeds": 1}, force=True)
    check_run_file(tmp_path, params | {"seeds": 3}, force=False)
    assert json.loads((tmp_path / "run.json").read_text())["seeds"] == 3
    with pytest.raises(UserError, match=r"other settings \(seeds\)"):
        check_run_file(tmp_path, params | {"seeds": 2}, force=False)
    # a web suite from before page seeds were spread per seed (seed 1 played seed 0's problems one episode later)
    # is not resumed with the new page seeds
    (tmp_path / "run.json").write_text(json.dumps(old | {"suite": "miniwob"}))
    with pytest.raises(UserError, match=r"other settings \(page_seed_stride\)"):
        check_run_file(tmp_path, params | {"suite": "miniwob", "page_seed_stride": 100_000}, force=False)
    # more games add to a stored games eval (each game directory checks its own settings); fewer or others do not
    (tmp_path / "run.json").write_text(json.dumps(params | {"games": ["zork1", "detective"]}))
    check_run_file(tmp_path, params | {"games": ["zork1", "detective", "zork2"]}, force=False)
    assert json.loads((tmp_path / "run.json").read_text())["games"] == ["zork1", "detective", "zork2"]
    for games in (["zork1"], ["zork1", "zork2", "advent"]):
        with pytest.raises(UserError, match=r"other settings \(games\)"):
            check_run_file(tmp_path, params | {"games": games}, force=False)
