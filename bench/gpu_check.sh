#!/usr/bin/env bash
# On a GPU host: start vLLM and SGLang with a small model, run bench/server_check.py through each
# (20 zork1 steps: batched vs unbatched log-probs, then s/step at 1, 8 and 32 workers), stop them.
# Needs: pip install -e . vllm "sglang[all]"; JITRL_GAMES_DIR with zork1. Results: bench/results/gpu-*.json
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${MODEL:-Qwen/Qwen3-0.6B}"
mkdir -p bench/results
wait_up() { for _ in $(seq 1 600); do curl -sf "$1" >/dev/null && return 0; sleep 1; done; echo "no server at $1" >&2; return 1; }

vllm serve "$MODEL" --port 8000 --max-logprobs 20 --gpu-memory-utilization 0.4 > /tmp/vllm.log 2>&1 &
VLLM=$!
trap 'kill $VLLM ${SGL:-} 2>/dev/null || true' EXIT
wait_up http://127.0.0.1:8000/v1/models
python bench/server_check.py --server http://127.0.0.1:8000 --server-api openai --steps 20 --workers 1,8,32 \
  --out bench/results/gpu-vllm.json
kill $VLLM; wait $VLLM 2>/dev/null || true

python -m sglang.launch_server --model-path "$MODEL" --port 30000 --mem-fraction-static 0.4 > /tmp/sglang.log 2>&1 &
SGL=$!
wait_up http://127.0.0.1:30000/get_model_info
python bench/server_check.py --server http://127.0.0.1:30000 --server-api sglang --steps 20 --workers 1,8,32 \
  --out bench/results/gpu-sglang.json
