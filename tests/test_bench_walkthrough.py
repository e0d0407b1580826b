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
