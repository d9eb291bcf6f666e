"""The composition root and process runner: the only package that imports
``api``, ``gateway`` and the concrete backends in ``storage``.

``cli`` parses the command line, ``settings`` loads configuration from flags
and ``PARLEY_*`` variables, ``composition`` builds the ``Services`` bundle
from it (choosing every backend), and ``runner`` serves the API and the
gateway with a clean drain on SIGTERM.
"""
