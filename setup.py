"""Which packages the distribution holds, found from the tree so a new subpackage cannot be
forgotten (everything else is in setup.cfg).

The top level keeps the user's layout: ``explorer/`` is the core, ``plugins/`` installs as
``explorer.plugins``, and the shipped ``specs/`` and ``sweeps/`` install as the data packages
``explorer.specs`` and ``explorer.sweeps`` (explorer.spec.catalog finds them by name), and
``suites/`` (the probe's) as ``explorer.suites``.
"""

from pathlib import Path

from setuptools import find_packages, setup

# distribution package -> folder of the checkout
CODE = {"explorer": "explorer", "explorer.plugins": "plugins"}
DATA = {"explorer.specs": "specs", "explorer.sweeps": "sweeps", "explorer.suites": "suites"}


def code_packages(package, folder):
    return [package] + [f"{package}.{sub}" for sub in find_packages(folder)]


def data_packages(package, folder):
    """A package per folder that holds YAML files (no __init__.py: they are data)."""
    folders = sorted({p.parent for p in Path(folder).rglob("*.yaml")})
    return {package + "".join(f".{part}" for part in f.relative_to(folder).parts): f.as_posix()
            for f in folders}


packages = [p for package, folder in CODE.items() for p in code_packages(package, folder)]
package_dir = {**CODE, **DATA}
package_data = {"explorer.html": ["templates/*"]}
for package, folder in DATA.items():
    found = data_packages(package, folder)
    packages += list(found)
    package_dir.update(found)
    package_data.update({name: ["*.yaml"] for name in found})

setup(packages=packages, package_dir=package_dir, package_data=package_data)
