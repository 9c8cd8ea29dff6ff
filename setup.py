"""Build the C kernels (audiolib/_dsp.c); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "audiolib._dsp",
            sources=["audiolib/_dsp.c"],
            extra_compile_args=["-O3", "-fno-math-errno", "-std=c99"],
        )
    ]
)
