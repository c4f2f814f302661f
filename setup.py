"""Build hook: the wheel students install holds the check library and nothing an instructor keeps."""

from setuptools import setup
from setuptools.command.build_py import build_py

INSTRUCTOR_MODULES = {"nbgrader_config"}


class StudentPackage(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [(pkg, module, path) for pkg, module, path in modules if module not in INSTRUCTOR_MODULES]


setup(cmdclass={"build_py": StudentPackage})
