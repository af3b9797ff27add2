"""The central inventory service: merges every site's ledger and answers for stock.

Edges reach it only through the HTTP contract in :mod:`jxc.contract`; nothing else in the
project imports this package except the ``jxc`` command line and the tests.

This module imports nothing on purpose: the ``jxc`` command line loads
``central_api.cli`` at every start, and importing a package runs its ``__init__`` first.
The public names live where they are made: :func:`central_api.main.create_app`,
:class:`central_api.core.config.Settings`, :func:`central_api.core.db.upgrade_database`,
:func:`central_api.services.ingest.ingest_batch`.
"""
