"""Running the agent: sessions (environment + model), evals over arms × seeds (× tasks), summaries and reports.

No command-line parsing here; imports :mod:`jitrl_cli.core` and below.
"""
