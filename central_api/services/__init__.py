"""Central's logic, one module per area (``items``, ``stock``, ``ledger``, ``feed``,
``auth``) plus the push itself (``ingest``) and what follows it (``projections``).

A service takes a connection and plain values, runs its own transaction, raises a
refusal from ``central_api.errors``, and returns domain objects (dataclasses), never an
HTTP model: the routes on top stay thin, and a command or a test calls it the same way.
"""
