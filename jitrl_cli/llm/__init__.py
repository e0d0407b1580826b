"""The language model: loading a GGUF with llama.cpp, the transcript prompt, and the prior over candidates.

Imports only ``jitrl_cli.errors``; everything above (core, runs, commands) scores through :mod:`.scoring`.
"""
