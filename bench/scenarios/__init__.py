"""End-to-end scenarios: fanout, ingest, echo, idle, crossnode, presence."""
