"""The ``volley`` command, installed with the package: the same command line
as the Rust binary (``volley fetch``, ``status``, ``export``, ``serve``, …),
run in this process by the compiled engine. ``python -m volley`` runs it
too."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Runs the command line on ``sys.argv`` and exits with its status (0
    every input got an outcome, 1 the run failed, 2 a usage or input error,
    130 interrupted: rerun to resume)."""
    from ._volley import cli_main

    # The engine handles Ctrl-C and SIGTERM itself (it drains, then exits
    # 130); Python's own handler would raise KeyboardInterrupt afterwards.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(cli_main(["volley", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
