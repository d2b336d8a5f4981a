"""How many files a process may hold open: raising the soft limit at start-up, and saying so
plainly when it is reached anyway.

Every open file, pipe and socket takes a descriptor, and ``RLIMIT_NOFILE`` caps how many a
process holds. Its soft limit is often 1024 (systemd services, many hosts and containers) while
the hard limit, which a process may raise its soft limit to without privileges, is far higher
(systemd: 524288). A sync of thousands of streams needs a file or two per stream in its
destination; so ``ferryman`` and each built-in connector raise their soft limit to the hard one
at start-up, as Go's runtime and many servers do, capped at :data:`CAP` (a few programs still
loop over every possible descriptor, or use ``select()``, which cannot take one past 1023; the
cap keeps such a program started by a sync from paying for a limit in the millions).

When the limit is reached all the same (a hard limit of 1024), the error names it and how to
raise it (:func:`describe`), never a full disk. Only the standard library's lightest modules: a
built-in connector's ``spec`` imports this.
"""

from __future__ import annotations

import errno

CAP = 65_536  # descriptors: 20x what a 3,000-stream sync's destination holds


def raise_limit(cap: int = CAP) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards its hard limit (at most ``cap``; never
    lowers it); returns the soft limit in force afterwards (0 where there is no such limit)."""
    try:
        import resource  # Unix only
    except ImportError:
        return 0
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    except (OSError, ValueError):  # a sandbox refusing it: keep what we have
        pass
    return int(soft) if soft != resource.RLIM_INFINITY else 0


def soft_limit() -> int | None:
    """The soft ``RLIMIT_NOFILE`` of this process (None when unlimited or unknown)."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def is_exhausted(exc: BaseException) -> bool:
    """Whether ``exc`` is a refusal to open one more file: this process's limit (EMFILE) or the
    whole system's (ENFILE)."""
    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)


def describe(exc: OSError, doing: str = "") -> str:
    """One line for EMFILE or ENFILE: which limit, and how to raise it. ``doing`` says what was
    being opened (``"opening a spill file in /data"``)."""
    where = f" {doing}" if doing else (f" opening {exc.filename}" if exc.filename else "")
    if exc.errno == errno.ENFILE:
        return (
            f"too many open files on this host{where}: the system's table of open files is full;"
            " raise the kernel's fs.file-max (sysctl) or run fewer syncs at once"
        )
    limit = soft_limit()
    held = f" ({limit}, RLIMIT_NOFILE)" if limit is not None else ""
    return (
        f"too many open files{where}: the process reached its limit of open files{held};"
        " raise it with `ulimit -n` (`ulimit -Hn` for the hard limit) in the shell that starts"
        " ferryman, LimitNOFILE= in its systemd unit, or --ulimit nofile= for its container"
    )
