"""The one exception type for bad user input.

Raise `UserError` with a single line that names the file/field and the fix; the CLI prints it as
`error: <message>` and exits with code 2, without a traceback. The message is kept to one line:
newlines (e.g. from a quoted bad value) are shown as ``\\n`` and it is cut at `MAX_MESSAGE` characters.
"""

MAX_MESSAGE = 1000
"""Longest message kept, in characters (a 128 KB bad field must not become a 128 KB error line)."""


class UserError(Exception):
    """Bad input from the user (a file, a flag, a config field): printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: object = "", *args: object):
        text = str(message).replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 3] + "..."
        super().__init__(text, *args)
