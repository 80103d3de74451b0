"""Errors that mean "the input is wrong", not "prunelab has a bug".

The command line prints these as one clear message (what is wrong, and the fix) instead of
a traceback; anything else is a bug and keeps its traceback.
"""


class PrunelabError(Exception):
    """Base of every error whose message tells the user what to fix."""
