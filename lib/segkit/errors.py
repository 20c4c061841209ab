"""Errors a user can cause: scripts print them on one line and exit non-zero, never a traceback."""


class SegkitError(Exception):
    """Expected failure with a message fit for the user (name the file and the problem)."""

    exit_code = 1


class UsageError(SegkitError):
    """Bad command-line arguments (exit code 2, like argparse)."""

    exit_code = 2


class InputError(SegkitError):
    """One input (image, video, folder) cannot be used; batch runs record it and go on."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class ModelError(SegkitError, ValueError):
    """A checkpoint that cannot be loaded or used (names the file; also a ValueError)."""
