"""Only the optional C extension; everything else is in pyproject.toml.

``ferryman.workers._scan`` speeds up the record path. ``optional=True``: where no C compiler
works, the build warns and goes on, and the record path runs its Python loop instead (set
``FERRYMAN_NO_EXTENSION=1`` to force that loop where the extension is built).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ferryman.workers._scan",
            ["src/ferryman/workers/_scan.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
