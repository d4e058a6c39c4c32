"""Helpers the tests share (not fixtures: those live in the conftest.py of the folder using them).

Tests import these as ``from support.<module> import ...``; pytest puts ``tests/`` on the path.
"""
