"""Build the optional C accelerator.

`mpgo._speedups` holds the shared-memory atomics and the local channel fast
path. It is optional: when no C compiler is available the build goes on and
mpgo falls back to pure Python (slower, same semantics).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mpgo._speedups",
            sources=["mpgo/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
            libraries=["dl"],       # dlopen/dlsym (part of libc since glibc 2.34)
        )
    ]
)
