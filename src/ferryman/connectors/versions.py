"""Version order for PyPI releases, close to PEP 440 (``packaging`` is not a dependency)."""

from __future__ import annotations

import re

_RELEASE = re.compile(r"^(?:(\d+)!)?(\d+(?:\.\d+)*)(.*)$")
_TAG = re.compile(r"^[._-]?([a-z]+)[._-]?(\d*)")
_FINAL = 4
# dev < alpha < beta < release candidate < final release < post release
_TAG_RANK = dict(dev=0, a=1, alpha=1, b=2, beta=2, c=3, rc=3, pre=3, preview=3, post=5, rev=5, r=5)

VersionKey = tuple[int, int, tuple[int, ...], int, int, str]


def version_key(version: str) -> VersionKey:
    """A sort key close to PEP 440 order that never fails (``packaging`` is not a dependency).

    ``1.10.0`` sorts after ``1.9.0``, ``1.0`` equals ``1.0.0``, ``1.0rc1`` sorts before ``1.0``
    and ``1.0.post1`` after it. Strings that are not versions at all sort before every version.
    """
    text, _, local = version.strip().lower().removeprefix("v").partition("+")
    match = _RELEASE.match(text)
    if match is None:
        return (0, 0, (), 0, 0, version)
    release = tuple(int(part) for part in match[2].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    rest = match[3]
    rank, number = _FINAL, 0
    if rest:
        tag = _TAG.match(rest)
        if tag is not None and tag[1] in _TAG_RANK:
            rank, number, rest = _TAG_RANK[tag[1]], int(tag[2] or 0), rest[tag.end() :]
        else:
            rank = 0
    extra = rest + ("+" + local if local else "")
    return (1, int(match[1] or 0), release, rank, number, extra)
