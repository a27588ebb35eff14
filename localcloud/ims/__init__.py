"""IMS: ``state.py`` (records and rules, one method per API operation, no HTTP) and ``wire.py``
(requests read, bodies written, the routing table)."""
