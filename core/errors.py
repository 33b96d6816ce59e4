"""One exception type for every problem a user can fix: bad params, bad data, bad paths.

Entry points catch it and print its message as one line, then exit non-zero (see core.cli).
"""


class UserError(Exception):
    """A problem in the user's input; the message names the file/line or params key."""


class ParamsError(UserError):
    """params.yaml (or a --set override) is invalid."""


class DataError(UserError):
    """A dataset file is missing, malformed or inconsistent."""
