"""Errors a user can cause, each mapped to an exit code by the CLI."""

EXIT_USAGE = 2


class LwprofError(Exception):
    """An error caused by the user's input; the CLI prints it as one line, exit code 2."""

    exit_code = EXIT_USAGE
