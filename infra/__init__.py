"""The Pulumi program (`__main__.py`), the stack schema (`config.py`) and the operator commands."""
