"""The instructor's grading tooling: release, autograde, feedback, the planted-bug corpus and the hidden inputs.

Nothing here is part of the package students install (``bn-from-scratch``
ships ``autograder`` without this subpackage): it holds what students must
not see. It is importable wherever the repository is installed (``pip install
-e .``), which is how instructors and the test suite use it.
"""
