"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input or an unusable resource (game, model, memory) the user can fix.

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    Never raise it after memory has been half-written: stores validate first.
    """
