"""The one exception type that the CLI turns into a one-line message instead of a traceback."""


class BbmnError(Exception):
    """A problem with the user's input or configuration, explained in the message."""
