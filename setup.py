"""Build the optional compiled kernels; all metadata lives in pyproject.toml.

The extension is optional: where no C compiler is found the install goes on and
softmaxreg runs its NumPy code instead (``softmaxreg.kernels.AVAILABLE`` says
which is in use).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildKernels(build_ext):
    def build_extensions(self):
        if self.compiler.compiler_type != "msvc":
            for ext in self.extensions:
                # no fused multiply-add in the Adam update: it must match NumPy
                ext.extra_compile_args += ["-O3", "-ffp-contract=off",
                                           "-fno-math-errno"]
        super().build_extensions()


setup(
    ext_modules=[Extension("softmaxreg._kernels", ["src/softmaxreg/_kernels.c"],
                           optional=True)],
    cmdclass={"build_ext": BuildKernels},
)
