"""The claims a chapter page makes about its own measurements, asserted where they are measured.

A page of the book states a measured result in a sentence ("diverged in 3 of 3 runs") and
backs it, in a code cell of the same page, with :func:`claim`. A claim that holds prints one
line, so the reader sees what was checked and what was measured; a claim that does not hold
raises :class:`ClaimFailed`, and since the book build executes every page and stops at an
exception, the build fails. A sentence can no longer disagree silently with the run that
produced its page.

An author checking a page on another machine (float results of training runs differ from one CPU to another) can
set ``BN_CLAIMS_KEEP_GOING=1`` in the environment of a build: every claim then prints ``[FAILS]`` or ``[holds]`` with
its measurement, and none raises, so one run lists all the claims to revisit. Never set it for a build that must
prove the text.
"""

import os

import numpy as np


class ClaimFailed(AssertionError):
    """A sentence of the book that the page's own run contradicts."""


def claim(statement, holds, measured=""):
    """Assert one statement of the prose: print it when ``holds`` is true, raise ``ClaimFailed`` otherwise.

    ``statement`` is what the text says, ``holds`` a single truth value (not an array: use
    ``np.all`` or ``np.any`` to say which), ``measured`` what this run measured, in words.
    """
    __tracebackhide__ = True
    if np.ndim(holds) != 0 or not isinstance(holds, (bool, np.bool_)):
        raise TypeError(f"claim {statement!r}: holds must be one truth value, got {type(holds).__name__}; "
                        "reduce an array with np.all or np.any first")
    if not holds and os.environ.get("BN_CLAIMS_KEEP_GOING"):
        print(f"[FAILS] {statement} (measured: {measured or '(nothing recorded)'})")
        return
    if not holds:
        raise ClaimFailed(f"the text says: {statement}\n  this run measured: {measured or '(nothing recorded)'}")
    print(f"[holds] {statement}" + (f" (measured: {measured})" if measured else ""))


def span(values, pattern="{:.3f}"):
    """'lo to hi' of the values, each written with ``pattern``: the spread of a result over seeds."""
    values = np.asarray(values, dtype=float)
    return f"{pattern.format(values.min())} to {pattern.format(values.max())}"
