"""The package version, alone so the daemon and the build read it without importing the package."""

__version__ = "0.1.0"
