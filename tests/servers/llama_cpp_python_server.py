"""Run llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``), unchanged, except that
models load without llama.cpp's repacked CPU weight buffers (``use_extra_bufts = False``), as
:class:`jitrl_cli.llm.model.LlamaModel` loads them: this machine's llama-cpp-python build crashes in decode with
them (a general protection fault in libggml-cpu), which would kill the server at its first request.

Usage: python tests/servers/llama_cpp_python_server.py --model GGUF --port P [server options]
"""

import sys

import llama_cpp.llama_cpp as capi

_defaults = capi.llama_model_default_params


def _model_params():
    params = _defaults()
    params.use_extra_bufts = False
    return params


capi.llama_model_default_params = _model_params

from llama_cpp.server.__main__ import main  # noqa: E402  (after the patch: the server binds it at import)

if __name__ == "__main__":
    sys.exit(main())
