"""Build hook: ship the top-level ``profiles/*.toml`` inside the wheel as ``s2g_deploy/_profiles/``.

Everything else about the package is in pyproject.toml. ``profiles/`` stays at the top of the repository
(easy to find and review); a wheel carries copies, and ``s2g_deploy.profiles.shipped_profile_dir`` looks
there first, then in the source checkout (which is what an editable install sees).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithProfiles(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads profiles/ from the checkout
        source = Path(__file__).resolve().parent / "profiles"
        target = Path(self.build_lib) / "s2g_deploy" / "_profiles"
        target.mkdir(parents=True, exist_ok=True)
        for profile in sorted(source.glob("*.toml")):
            shutil.copyfile(profile, target / profile.name)


setup(cmdclass={"build_py": BuildPyWithProfiles})
