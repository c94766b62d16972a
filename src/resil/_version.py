"""The version of resil (one place; the package face and the views read it)."""

__version__ = "0.1.0"
