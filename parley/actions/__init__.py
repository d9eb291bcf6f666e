"""Domain actions: the only code that writes state and publishes events.

Each action checks input and permissions, writes through the stores, and
publishes the resulting events to exactly the users who may see them.  The
REST API and the gateway are thin adapters over these functions.
"""
