"""The ``ferryman`` command's first module, light on purpose.

Loading the CLI takes a few hundred milliseconds; a Ctrl-C in that time used to end the command
with a ``KeyboardInterrupt`` traceback. Here it ends with the one line any other interrupted
command prints, and exit code 130. Nothing has been stored by then: no job exists yet.
"""

import os
import sys


def _interrupted() -> None:
    sys.stderr.write("error: interrupted\n")
    sys.stderr.flush()
    os._exit(130)


def main() -> None:
    from ferryman.open_files import raise_limit

    raise_limit()  # before anything opens a file: a worker may run syncs of thousands of streams
    try:
        from ferryman.entry import main as run
    except KeyboardInterrupt:
        _interrupted()
    try:
        run()
    except KeyboardInterrupt:  # after loading, before a command's own handler took over
        _interrupted()
