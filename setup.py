"""Package discovery only (everything else is in pyproject.toml).

The Triton kernels live in the top-level ``kernels/`` folder but install as ``genossm.kernels``; setuptools'
static ``find`` cannot rename a tree, so the package list is built here.
"""

from setuptools import find_packages, setup

packages = find_packages(include=["genossm", "genossm.*"])
packages += ["genossm." + name for name in find_packages(include=["kernels", "kernels.*"])]
packages += ["genossm.configs", "genossm.sample_data"]

setup(packages=packages)
