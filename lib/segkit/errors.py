"""Errors a user can cause: scripts print them on one line and exit non-zero, never a traceback."""
import sys

# Exit codes of every script; library runs (e.g. beam_runner.run_folder) return them too.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def error(msg: str) -> None:
    """One ``segkit: error: ...`` line on stderr (the format of every reported problem)."""
    print(f"segkit: error: {msg}", file=sys.stderr)


class SegkitError(Exception):
    """Expected failure with a message fit for the user (name the file and the problem)."""

    exit_code = 1


class UsageError(SegkitError):
    """Bad command-line arguments (exit code 2, like argparse)."""

    exit_code = 2


class OptionError(UsageError, ValueError):
    """An option value that is refused (threshold 2, classes a model cannot produce...): exit 2
    on the command line, a ValueError to API callers, with the same words."""


class InputError(SegkitError):
    """One input (image, video, folder) cannot be used; batch runs record it and go on."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class OutputError(SegkitError):
    """An output file cannot be written (disk full, permission, read-only): names the file.

    ``errno`` is the OS error number when there was one, so a run can stop on a full disk
    instead of failing every remaining input the same way."""

    def __init__(self, path, problem: str, errno: int | None = None):
        self.path, self.problem, self.errno = str(path), problem, errno
        super().__init__(f"{path}: {problem}")

    @property
    def disk_full(self) -> bool:
        import errno as _errno

        return self.errno in (_errno.ENOSPC, _errno.EDQUOT)


class ModelError(SegkitError, ValueError):
    """A checkpoint that cannot be loaded or used (names the file; also a ValueError)."""
