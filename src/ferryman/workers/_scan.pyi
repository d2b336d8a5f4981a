import mmap

def scan_records(
    buffer: mmap.mmap, start: int, end: int, heads: dict[bytes, list[int]], max_bytes: int, moved: set[int], /
) -> int: ...
def tee(fd_in: int, fd_out: int, length: int, /) -> int: ...  # Linux only
