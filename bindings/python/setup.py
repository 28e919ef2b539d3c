"""Only what pyproject.toml cannot say: the wheel carries a native library,
so it is tagged for this platform, and for any Python 3 (ctypes, no
extension module): py3-none-<platform>."""

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel


class PlatformWheel(bdist_wheel):
    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(cmdclass={"bdist_wheel": PlatformWheel})
