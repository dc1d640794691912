"""A handler module that fails on import, for the registry's error tests."""

raise RuntimeError("this module fails on import")
