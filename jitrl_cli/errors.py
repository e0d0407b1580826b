"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input or an unusable resource (game, model, memory) the user can fix.

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    Never raise it after memory has been half-written: stores validate first.
    """


def require(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds (option validation)."""
    if not condition:
        raise UserError(message)
