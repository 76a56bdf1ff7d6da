"""The engine's version, recorded in every derivation's provenance."""

from importlib.metadata import PackageNotFoundError, version

try:
    ENGINE_VERSION = version("b12kg")
except PackageNotFoundError:  # a source tree that is not installed
    ENGINE_VERSION = "0.0.0+source"
