"""jitrl: Just-In-Time Reinforcement Learning for local LLM agents (arXiv 2601.18510).

Data flow, one module per stage:

    adapters/ (environment) -> jitrl_cli.state_key (state) -> memories/ (retrieval)
    -> jitrl_cli.advantage (advantage) -> jitrl_cli.scoring + jitrl_cli.update
    (prior logits, logit update) -> action -> reward -> jitrl_cli.returns -> memories/
"""

__version__ = "0.1.0"
