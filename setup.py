"""Build steps beyond pyproject.toml: the C core through cffi, and the bundled guest
firmware, compiled with the system gcc/ld and shipped inside the devicemodel package."""

import os
import shutil
import subprocess
import tempfile

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED_GUESTS = ["default.elf"]


class BuildExtWithFirmware(build_ext):
    def run(self):
        super().run()
        target = HERE if self.inplace else self.build_lib
        guests = os.path.join(target, "devicemodel", "guests")
        os.makedirs(guests, exist_ok=True)
        with tempfile.TemporaryDirectory() as out:
            subprocess.run(["make", "-s", "-C", os.path.join(HERE, "firmware"), f"OUT={out}"], check=True)
            for name in BUNDLED_GUESTS:
                shutil.copy(os.path.join(out, name), os.path.join(guests, name))


setup(
    cffi_modules=["cffi_build/build_silicon.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithFirmware},
)
