"""jitrl: Just-In-Time Reinforcement Learning for local LLM agents (arXiv 2601.18510).

Data flow, one module per stage:

    adapters/ (environment, its state key in info["state_key"], reward wrappers in adapters.wrappers)
    -> memories/ (retrieval) -> jitrl_cli.core.advantage (advantage) -> jitrl_cli.llm.scoring
    + jitrl_cli.core.update (prior logits, logit update) -> action -> reward -> jitrl_cli.core.returns
    -> memories/   (the loop: jitrl_cli.core.agent)
"""

__version__ = "0.1.0"
