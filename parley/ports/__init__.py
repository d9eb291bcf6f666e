"""The domain's ports: what Parley needs from its infrastructure.

Rules for this package:

* It imports nothing of ours but ``parley.model`` (the records).
* One small ``typing.Protocol`` per aggregate, a handful of methods each;
  every method's docstring is its contract: what is atomic, what is ordered,
  what may be lost.  One conformance suite per port runs against every
  implementation with real services (``tests/storage/``).
* Only the composition root (``server/composition.py``) names a concrete
  implementation; actions reach ports through ``parley.services.Services``.

Modules: ``accounts`` (users, sessions, leases: the directory),
``workspaces``, ``channels``, ``messages``, ``files`` (the shard stores),
``appender`` (the group-commit writer), ``hub``, ``presence``, ``blobs``, and
``stores`` (the bundle of the database ports the actions use).
"""
