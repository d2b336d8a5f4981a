"""The watchdog behind on its pipe must not take a full pipe for its Ferryman's death.

A real watchdog process, stopped (SIGSTOP: a starved or paused process) while its Ferryman
registers more connectors than its pipe holds. Before, the first write that found the pipe full
closed it, and the watchdog, once it ran again, read the pipe's end as the process's death and
stopped every connector of the living process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import fcntl, os, signal, subprocess, sys, termios, array
    from ferryman.launchers.watchdog import Watchdog

    watchdog = Watchdog()
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    watchdog.watch_group(sleeper.pid)
    fcntl.fcntl(watchdog._fd, fcntl.F_SETPIPE_SZ, 4096)  # one page: a backlog of ~200 lines
    keeper = watchdog._process
    os.kill(keeper.pid, signal.SIGSTOP)
    for _ in range(1000):  # connectors that came and went while it was stopped
        watchdog.forget_group(4_000_000)
    os.kill(keeper.pid, signal.SIGCONT)
    pending = array.array("i", [1])
    while watchdog._fd is not None and keeper.poll() is None:
        fcntl.ioctl(watchdog._fd, termios.FIONREAD, pending)
        if pending[0] == 0:  # it has read everything it was sent
            break
    if watchdog._fd is None:  # the pipe was closed: the watchdog reads its end, acts, and exits
        keeper.wait(timeout=60)
    sleeper_alive = sleeper.poll() is None
    print(keeper.poll() is None, sleeper_alive, watchdog._fd is not None)
    sleeper.kill()
    """
)


def test_a_watchdog_behind_on_its_pipe_never_stops_the_connectors_of_a_live_process() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"], done.stdout
