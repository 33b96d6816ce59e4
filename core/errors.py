"""One exception type for every problem a user can fix: bad params, bad data, bad paths.

Entry points catch it and print its message as one line, then exit non-zero (see core.cli).
"""


class UserError(Exception):
    """A problem in the user's input; the message names the file/line or params key."""


class ParamsError(UserError):
    """params.yaml (or a --set override) is invalid."""


class DataError(UserError):
    """A dataset file is missing, malformed or inconsistent.

    `str(err)` is the one line users see. Code reads the structured fields instead of parsing
    it: `detail` is what is wrong (without any how-to-skip hint), and `problem_class` is the
    `data.allow_skip` class that would have skipped it (None when it cannot be skipped; see
    `SkipLedger.problem`, which sets both).
    """

    def __init__(self, message: str, *, problem_class: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.problem_class = problem_class
        self.detail = message if detail is None else detail


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the handler core.cli.run_main installs (core.signals).

    A KeyboardInterrupt on purpose: it unwinds exactly like Ctrl-C (an MLflow run ends KILLED, a
    study trial FAIL), and only the exit code differs (143 instead of 130)."""
