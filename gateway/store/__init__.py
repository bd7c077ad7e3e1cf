"""The embedded ClickHouse (chDB) as a local server: owned by one process, read over HTTP by the others.

- ``embedded``: ``StoreServer``, the store of one data folder (engine, migrations, in-process
  inserts, the HTTP interface, the discovery file); ``llm-gateway store`` runs one alone.
- ``http_interface``: chDB behind ClickHouse's HTTP interface (``wire``: the protocol's parts;
  ``engine``: statements on threads).
- ``discovery``: ``<data_dir>/store.json`` and ``StoreLocator``, how readers find the store.
- ``availability``: whether chDB (the ``embedded`` extra) is installed, and the one line to say
  when it is not.

Only ``engine`` imports chDB, and only when a store opens: readers (the serving process) use
``discovery`` and clickhouse-connect's HTTP client, never the engine.
"""
