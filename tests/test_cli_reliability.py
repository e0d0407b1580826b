"""Issue 19: bad numbers and paths are one-line errors; bare `jitrl`, --version, shell completion, --help;
tables, the live view and curve.png. Everything through the real `jitrl` entry point in a subprocess."""

import json
import os
import re
import subprocess
import sys

import pytest

from jitrl_cli import __version__
from tests.conftest import run_cli

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def _one_line_error(proc, message):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in proc.stderr


# every numeric option of play, eval, web and memory inspect: finite and in range
BAD_NUMBERS = [
    (["play", "zork1", "--beta", "inf"], "--beta must be a finite number >= 0, got inf"),
    (["play", "zork1", "--beta", "nan"], "--beta must be a finite number >= 0, got nan"),
    (["play", "zork1", "--seed", "-5"], "--seed must be an integer in [0, 4294967295], got -5"),
    (["play", "zork1", "--alpha", "-1"], "--alpha must be a finite number >= 0, got -1.0"),
    (["play", "zork1", "--death-penalty", "nan"], "--death-penalty must be a finite number >= 0, got nan"),
    (["play", "zork1", "--temperature", "inf"], "--temperature must be a finite number > 0"),
    (["play", "zork1", "--novelty", "1e400"], "--novelty must be a finite number >= 0, got inf"),
    (["play", "zork1", "--bonus-prob", "nan"], "--bonus-prob must be in [0, 1]"),
    (["play", "zork1", "--min-similarity", "-inf"], "--min-similarity must be in [-1, 1]"),
    (["play", "zork1", "--k", "0"], "--k must be at least 1"),
    (["play", "zork1", "--max-steps", "0"], "--max-steps must be at least 1"),
    (["play", "zork1", "--n-ctx", "100"], "--n-ctx must be at least 1024"),
    (["play", "zork1", "--n-ctx", "99999999999"], "--n-ctx must be at least 1024 and at most"),
    (["play", "zork1", "--valid-actions-timeout", "0"], "--valid-actions-timeout must be > 0"),
    (["play", "zork1", "--valid-actions-timeout", "inf"], "--valid-actions-timeout must be > 0"),
    (["eval", "zork1", "--episodes", "0"], "--episodes must be at least 1"),
    (["eval", "zork1", "--seeds", "-2"], "--seeds must be at least 1"),
    (["eval", "zork1", "--seed", "-1"], "--seed must be an integer in [0, 4294967295]"),
    (["eval", "zork1", "--beta", "nan"], "--beta must be a finite number >= 0"),
    (["eval", "zork1", "--death-penalty", "inf"], "--death-penalty must be a finite number >= 0"),
    (["eval", "zork1", "--alpha", "-0.5"], "--alpha must be a finite number >= 0"),
    (["eval", "--suite", "miniwob", "--tasks", "click-button", "--gamma", "nan"], "--gamma must be in [0, 1]"),
    (["web", "--task", "click-button", "--instances", "-1"], "--instances must be >= 0"),
    (["web", "--task", "click-button", "--episodes", "0"], "--episodes must be at least 1"),
    (["web", "--task", "click-button", "--seed", "-3"], "--seed must be an integer in [0, 4294967295]"),
    (["web", "--task", "click-button", "--alpha", "nan"], "--alpha must be a finite number >= 0"),
    (["web", "--task", "click-button", "--max-steps", "0"], "--max-steps must be at least 1"),
    (["web", "--task", "click-button", "--n-ctx", "512"], "--n-ctx must be at least 1024"),
    (["web", "--task", "click-button", "--history", "-1"], "--history must be an integer >= 0"),
    (["play", "zork1", "--history", "-2"], "--history must be an integer >= 0"),
    (["memory", "inspect", "--beta", "inf"], "--beta must be a finite number >= 0"),
    (["memory", "inspect", "--alpha", "-1"], "--alpha must be a finite number >= 0"),
    (["memory", "inspect", "--gamma", "2"], "--gamma must be in [0, 1]"),
    (["memory", "inspect", "--min-similarity", "nan"], "--min-similarity must be in [-1, 1]"),
    (["memory", "inspect", "--k", "-1"], "--k must be at least 1"),
    (["play", "zork1", "--avoid-deaths-horizon", "0"], "--avoid-deaths-horizon must be an integer >= 1, got 0"),
    (["eval", "zork1", "--avoid-deaths-horizon", "-1"], "--avoid-deaths-horizon must be an integer >= 1"),
    (["memory", "inspect", "--avoid-deaths-horizon", "0"], "--avoid-deaths-horizon must be an integer >= 1"),
    (["play", "zork1", "--avoid-deaths-horizon", "2"], "--avoid-deaths-horizon needs --avoid-deaths or --avoid-deaths-own"),
    (["eval", "zork1", "--avoid-deaths-horizon", "3"], "--avoid-deaths-horizon needs --avoid-deaths or --avoid-deaths-own"),
    (["memory", "inspect", "--avoid-deaths-horizon", "2"], "--avoid-deaths-horizon needs --avoid-deaths or --avoid-deaths-own"),
    (["play", "zork1", "--safe-cycles", "--no-avoid-cycles"], "--safe-cycles needs --avoid-cycles"),
    (["eval", "zork1", "--safe-cycles", "--paper"], "--safe-cycles needs --avoid-cycles"),
    (["play", "zork1", "--across-worlds", "mean", "--q-estimate", "max"], "--across-worlds mean needs --q-estimate expectimax"),
    (["eval", "zork1", "--across-worlds", "mean", "--paper"], "--across-worlds mean needs --q-estimate expectimax"),
    (["memory", "inspect", "--across-worlds", "mean", "--q-estimate", "mean"], "--across-worlds mean needs --q-estimate expectimax"),
    (["play", "zork1", "--across-worlds", "min"], "--across-worlds must be max or mean, got 'min'"),
    (["play", "zork1", "--death-credit", "-1"], "--death-credit must be an integer >= 0, got -1"),
    (["play", "zork1", "--go-explore", "--replay-best"], "--go-explore and --replay-best both choose where an episode returns to: give one"),
    (["eval", "zork1", "--replay-best", "--go-explore"], "--go-explore and --replay-best both choose where an episode returns to: give one"),
]


@pytest.mark.parametrize("args, message", BAD_NUMBERS, ids=[" ".join(a) for a, _ in BAD_NUMBERS])
def test_bad_numbers_are_one_line_errors_that_create_nothing(args, message, tmp_path):
    where = ["--out", str(tmp_path / "o")] if args[0] == "eval" else ["--memory", str(tmp_path / "m")]
    proc = run_cli(*args, *where)
    _one_line_error(proc, message)
    assert not any(tmp_path.iterdir())  # no memory, no eval directory


def test_eval_out_that_is_a_file_is_a_one_line_error(tmp_path):
    taken = tmp_path / "hostname"
    taken.write_text("not a directory\n")
    for out in (taken, taken / "sub"):
        proc = run_cli("eval", "zork1", "--episodes", "1", "--max-steps", "1", "--seeds", "1", "--out", str(out))
        _one_line_error(proc, f"{taken} exists and is not a directory")
    assert taken.read_text() == "not a directory\n"


def test_games_download_into_a_file_is_a_one_line_error(tmp_path):
    taken = tmp_path / "games"
    taken.write_text("x")
    _one_line_error(run_cli("games", "download", "--dest", str(taken), "--url", "http://127.0.0.1:9/none.zip"),
                    f"--dest {taken} exists and is not a directory")


def test_bare_jitrl_prints_help_and_no_empty_error():
    for args in ([], ["memory"], ["games"]):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert "Usage: jitrl" in proc.stdout and "Commands" in proc.stdout
        assert "error" not in proc.stderr and proc.stderr.strip() == ""


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"jitrl {__version__}" and proc.stderr == ""


def test_shell_completion(tmp_path):
    # the shell is named, not detected: typer otherwise looks for a shell among the process's ancestors (shellingham),
    # and a test run started without one (a detached job, a CI runner that starts pytest itself) finds none
    named = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = run_cli("--show-completion", "bash", env=named)
    assert script.returncode == 0, script.stderr
    assert "_JITRL_COMPLETE=complete_bash" in script.stdout and "complete" in script.stdout
    # what the installed script asks: complete `jitrl pl` and `jitrl play --ep`
    words = run_cli(env={"_JITRL_COMPLETE": "complete_bash", "COMP_WORDS": "jitrl pl", "COMP_CWORD": "1"})
    assert words.returncode == 0 and words.stdout.split() == ["play"], (words.stdout, words.stderr)
    opts = run_cli(env={"_JITRL_COMPLETE": "complete_bash", "COMP_WORDS": "jitrl play --ep", "COMP_CWORD": "2"})
    assert opts.returncode == 0 and "--episodes" in opts.stdout.split(), (opts.stdout, opts.stderr)
    installed = run_cli("--install-completion", "bash", env={"HOME": str(tmp_path)} | named)
    assert installed.returncode == 0, installed.stderr
    assert "jitrl" in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize("command", [["play"], ["eval"], ["web"], ["report"], ["memory", "inspect"], []])
def test_help_shows_no_value_type_after_flags(command):
    proc = run_cli(*command, "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "<bool>" not in proc.stdout, proc.stdout
    assert "--help" in proc.stdout


def _write_log(path, arm, seed, scores, max_score=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"arm": arm, "seed": seed, "episode": e + 1, "score": s, "max_score": max_score, "uuid": f"{arm}{seed}{e}",
             "seconds_per_step_median": 0.125, "victory": s > 0} for e, s in enumerate(scores)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _piped_env():
    # stdout is a pipe; nothing pretends it is a terminal or fixes its width
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}
    return env


def test_report_table_is_not_cut_when_piped(tmp_path):
    out = tmp_path / "an-eval-directory-with-a-rather-long-name"
    (out / "episodes").mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"game": "zork1", "episodes": 3, "max_steps": 60, "seeds": 2}))
    _write_log(out / "episodes" / "jitrl-seed0.jsonl", "jitrl", 0, [100, 110, 1200])
    _write_log(out / "episodes" / "jitrl-seed1.jsonl", "jitrl", 1, [110, 120, 1400])
    _write_log(out / "episodes" / "static-seed0.jsonl", "static", 0, [5, 5, 5])
    _write_log(out / "episodes" / "static-seed1.jsonl", "static", 1, [5, 5, 5])
    proc = subprocess.run([sys.executable, "-m", "jitrl_cli", "report", str(out)], capture_output=True, text=True,
                          env=_piped_env(), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    summary = json.loads((out / "summary.json").read_text())["arms"]["jitrl"]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("│ jitrl"))
    for d in (summary["average"], summary["final"], summary["last10"]):
        assert f"{d['mean']:.1f}±{d['std']:.1f}" in row, row  # every value whole, on the arm's one line
    assert "0.12" in row and f"{summary['auc']:.2f}" in row
    assert "sample std" in proc.stdout
    assert f"plot: {out / 'curve.png'}" in proc.stdout.splitlines()


def test_plus_minus_is_the_sample_std_in_game_and_suite_summaries(tmp_path):
    game = tmp_path / "game"
    _write_log(game / "episodes" / "jitrl-seed0.jsonl", "jitrl", 0, [0, 10])
    _write_log(game / "episodes" / "jitrl-seed1.jsonl", "jitrl", 1, [0, 30])
    proc = run_cli("report", str(game), "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["arms"]["jitrl"]["final"] == {"mean": 20.0, "std": pytest.approx(20 / 2**0.5)}  # not 10 (ddof=0)
    assert s["arms"]["jitrl"]["curve_std"] == pytest.approx([0.0, 20 / 2**0.5])
    assert "ddof=1" in s["std"]

    suite = tmp_path / "suite"
    (suite / "t").mkdir(parents=True)
    (suite / "run.json").write_text(json.dumps({"suite": "miniwob", "tasks": ["t"], "arms": ["jitrl"], "seeds": 3,
                                                "episodes": 1}))
    for seed, success in enumerate([1, 0, 0]):
        _write_log(suite / "t" / "episodes" / f"jitrl-seed{seed}.jsonl", "jitrl", seed, [success])
    proc = run_cli("report", str(suite), "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    expected = (((1 - 1 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2) ** 0.5  # sample std of (1, 0, 0)
    assert s["arms"]["jitrl"]["final"]["std"] == pytest.approx(expected)
    assert s["tasks"]["t"]["jitrl"]["final"]["std"] == pytest.approx(expected)
    assert s["arms"]["jitrl"]["curve_std"] == pytest.approx([expected]) and "ddof=1" in s["std"]
    table = run_cli("report", str(suite)).stdout
    assert f"{1 / 3:.2f}±{expected:.2f}" in table and "sample std" in table


def test_curve_png_labels_styles_and_axis(tmp_path):
    from jitrl_cli.runs.report import curve_figure, summarize

    out = tmp_path / "eval"
    _write_log(out / "episodes" / "jitrl-seed0.jsonl", "jitrl", 0, [20, 20, 30, 40])
    _write_log(out / "episodes" / "static-seed0.jsonl", "static", 0, [20, 20, 30, 40])  # the same curve
    proc = run_cli("report", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "curve.png").read_bytes().startswith(b"\x89PNG")
    summary = summarize(out)
    fig = curve_figure(summary["arms"], title="t", ylabel="score")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["jitrl (1 seed)", "static (1 seed)"]
    lines = ax.get_lines()
    assert len(lines) == 2
    assert lines[0].get_linestyle() != lines[1].get_linestyle() and lines[0].get_marker() != lines[1].get_marker()
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 40
    two = curve_figure({"jitrl": summary["arms"]["jitrl"] | {"seeds": [0, 1]}}, title="t", ylabel="score")
    assert [t.get_text() for t in two.axes[0].get_legend().get_texts()] == ["jitrl (2 seeds)"]


@pytest.mark.slow
def test_live_view_legend_and_step_bar(tmp_path):
    env = {"TTY_COMPATIBLE": "1", "TERM": "xterm-256color", "COLUMNS": "220"}
    proc = run_cli("play", "zork1", "--episodes", "2", "--max-steps", "2", "--memory", str(tmp_path / "m"), env=env)
    assert proc.returncode == 0, proc.stderr
    text = ANSI.sub("", proc.stdout)
    assert "n = neighbours that took the action" in text and "* = exploration bonus" in text
    # the last frame's step bar shows the last episode's steps, not a reset 0/2
    bars = re.findall(r"steps\s+\S+\s+(\d+)/(\d+)", text)
    assert bars and bars[-1] == ("2", "2"), bars[-3:]


def test_table_titles_count_in_the_singular_for_one():
    from jitrl_cli.commands.view import _count

    assert [_count(1, "seed"), _count(3, "seed"), _count(None, "seed")] == ["1 seed", "3 seeds", "? seeds"]
