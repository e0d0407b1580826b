"""Cross-task transfer on MiniWoB++ (issue 23): episode 1 on tasks never seen before, with a memory filled by
other tasks vs an empty memory.

    python bench/web_transfer.py --fill click-button,click-link,enter-text,focus-text --fill-episodes 5 \\
        --unseen click-button-sequence,click-dialog,enter-password,focus-text-2 --seeds 3 --out bench/results/web-transfer.json

For each seed: ``jitrl web --tasks FILL -n E`` fills a fresh memory (one suite memory, abstract action keys);
then every unseen task plays one episode twice, on a copy of that memory and on an empty one (the same
seed, so the same problem instance). Prints the success rates and the mean cross_task_fraction.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def web(*args: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "jitrl_cli", "web", *args, "--json"], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    return [json.loads(line) for line in out.splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fill", required=True)
    ap.add_argument("--fill-episodes", type=int, default=5)
    ap.add_argument("--unseen", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            filled = Path(tmp, "filled")
            web("--tasks", args.fill, "-n", str(args.fill_episodes), "--seed", str(seed), "--memory", str(filled))
            for task in args.unseen.split(","):
                for arm in ("filled", "empty"):
                    memory = Path(tmp, f"{arm}-{task}")
                    if arm == "filled":
                        shutil.copytree(filled, memory)
                    (episode,) = web("--task", task, "-n", "1", "--seed", str(seed + 1000), "--memory", str(memory))
                    rows.append({"seed": seed, "task": task, "arm": arm, "success": episode["success"],
                                 "cross_task_fraction": episode.get("cross_task_fraction")})
                    print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for arm in ("filled", "empty"):
        mine = [r for r in rows if r["arm"] == arm]
        shares = [r["cross_task_fraction"] for r in mine if r["cross_task_fraction"] is not None]
        summary[arm] = {"episodes": len(mine), "success_rate": sum(r["success"] for r in mine) / len(mine),
                        "cross_task_fraction": sum(shares) / len(shares) if shares else None}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
