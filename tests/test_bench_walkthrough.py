"""bench/walkthrough.py: the walkthrough's score within N steps, on the real zork1."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "walkthrough.py"


def test_walkthrough_scores_on_zork1(tmp_path, games_dir):
    out = tmp_path / "w.json"
    proc = subprocess.run([sys.executable, str(BENCH), "zork1", "--steps", "8,9,60", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    # the egg (+5) at step 4, the kitchen (+10) at step 9; 63 points after 60 steps
    assert result["score_at"] == {"8": 5.0, "9": 15.0, "60": 63.0}
    assert [(r["step"], r["reward"]) for r in result["rewards"][:3]] == [(4, 5.0), (9, 10.0), (25, 25.0)]
    assert "60 steps: 63" in proc.stdout
    bad = subprocess.run([sys.executable, str(BENCH), "zork1", "--steps", "ten"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--steps must be a comma list" in bad.stderr
    missing = subprocess.run([sys.executable, str(BENCH), "nosuchgame"], capture_output=True, text=True)
    assert missing.returncode == 2 and "unknown game" in missing.stderr and "Traceback" not in missing.stderr


def test_a_denser_route_beats_69_within_60_steps(tmp_path, games_dir):
    """bench/routes/zork1-70.txt, played on the real zork1, scores 70 at step 38 (the walkthrough: 63 at 60)."""
    route = BENCH.parent / "routes" / "zork1-70.txt"
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(BENCH), "zork1", "--route", str(route), "--steps", "37,38,60", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["route"] == str(route) and result["walkthrough_length"] == 38
    assert result["score_at"] == {"37": 64.0, "38": 70.0, "60": 70.0}
    # the troll passage (+5, one blow with the sword) and the platinum bar (+10, after "echo") are on the way
    assert [(r["action"], r["reward"]) for r in result["rewards"]][4:6] == [("east", 5.0), ("take bar", 10.0)]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing but a comment\n\n")
    bad = subprocess.run([sys.executable, str(BENCH), "zork1", "--route", str(empty)], capture_output=True, text=True)
    assert bad.returncode == 2 and "holds no action" in bad.stderr and "Traceback" not in bad.stderr
