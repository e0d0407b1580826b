"""The JitRL algorithm: state key → retrieval → advantage → logit update → action, and returns → memory.

One agent step and its parts (paper §4); imports :mod:`jitrl_cli.llm`, ``adapters`` and ``memories`` only.
"""
