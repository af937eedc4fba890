"""Builds leave the source tree as it was: setuptools' ``build/`` and ``*.egg-info`` go to a
temporary folder, removed afterwards.

Why: pip builds a local folder in place, and setuptools copies everything under ``build/lib``
into the wheel, including modules since deleted from the tree (``git pull`` then ``pip install
.`` would install them again); and ``sudo pip install .`` left a root-owned ``build/`` that the
clone's owner could not remove.  The metadata is all in ``setup.cfg``.
"""

import atexit
import shutil
import tempfile

from setuptools import setup
from setuptools.command.build import build
from setuptools.command.egg_info import egg_info

_TEMPORARY = tempfile.mkdtemp(prefix="emotion-edge-build-")
atexit.register(shutil.rmtree, _TEMPORARY, ignore_errors=True)


class TemporaryBuild(build):
    def initialize_options(self) -> None:
        super().initialize_options()
        self.build_base = f"{_TEMPORARY}/build"


class TemporaryEggInfo(egg_info):
    def initialize_options(self) -> None:
        super().initialize_options()
        self.egg_base = _TEMPORARY


setup(cmdclass={"build": TemporaryBuild, "egg_info": TemporaryEggInfo})
