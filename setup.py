"""Build the C kernels (audiolib/_dsp.c) and ship the QC policy presets; the rest is in
pyproject.toml."""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class build_py_with_policies(build_py):
    """Ship data/policies/*.yaml as audioqc/policies/ (found by importlib.resources)."""

    def run(self):
        super().run()
        dest = Path(self.build_lib) / "audioqc" / "policies"
        dest.mkdir(parents=True, exist_ok=True)
        for src in sorted(Path("data/policies").glob("*.yaml")):
            self.copy_file(str(src), str(dest / src.name))


setup(
    cmdclass={"build_py": build_py_with_policies},
    ext_modules=[
        Extension(
            "audiolib._dsp",
            sources=["audiolib/_dsp.c"],
            extra_compile_args=["-O3", "-fno-math-errno", "-ffp-contract=fast", "-std=c99"],
        )
    ],
)
