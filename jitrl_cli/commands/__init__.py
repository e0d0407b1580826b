"""The command line: the Typer app, its options, and the Rich views (the only layer that imports typer).

Each command parses and validates its options, then calls :mod:`jitrl_cli.runs` and below.
"""
