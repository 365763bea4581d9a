"""What test modules and benchmark scripts share: harnesses, fakes, reference clients, small renders.

Test modules import from here (`from support.gateway import render`), never from each other or from
conftest.py; pytest puts tests/ on sys.path, and the benchmark scripts add it themselves.
"""
