"""Maintainer scripts that regenerate the vendored upstream data (chart values, engine flags) from the
pinned upstream releases. Not used at run time; each module's docstring says how to run it."""
