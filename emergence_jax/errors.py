"""The one exception type for bad user input.

Raise `UserError` with a single line that names the file/field and the fix; the CLI prints it as
`error: <message>` and exits with code 2, without a traceback.
"""


class UserError(Exception):
    """Bad input from the user (a file, a flag, a config field): printed as one line, exit code 2."""

    exit_code = 2
