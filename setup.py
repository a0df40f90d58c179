"""Builds the optional C accelerator ``pylvs._native`` (sources in native/).

A compile failure never fails the installation: pylvs then runs on its pure-Python twins and says so
(``pylvs --version``, the start log, the stats).  Set ``PYLVS_REQUIRE_NATIVE=1`` at install time to make a
failed build fatal instead.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - any compiler/toolchain failure
            self._failed(e)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            self._failed(e)

    def _failed(self, e):
        if os.environ.get("PYLVS_REQUIRE_NATIVE") == "1":
            raise e
        print("\n" + "=" * 72 + "\nWARNING: pylvs._native did not build (" + str(e) + ").\n"
              "pylvs will run on its pure-Python twins, much slower; `pylvs --version` says so.\n" + "=" * 72,
              file=sys.stderr)


CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers",
          "-fno-strict-aliasing"]

setup(
    ext_modules=[
        Extension(
            "pylvs._native",
            sources=["native/module.c", "native/csum.c", "native/flowtab.c", "native/fastpath.c", "native/io.c",
                     "native/offload.c", "native/module_io.c"],
            depends=["native/pylvs_native.h"],
            extra_compile_args=CFLAGS,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
