"""Ferryman's built-in connectors.

Each module is a standalone Airbyte-protocol connector, run as its own process exactly like any
other connector (``python -m ferryman.builtin.<module> spec|check|discover|read|write ...``):

    source_bench         deterministic records at high speed, for benchmarks and tests
    source_empty         no records, only null states: the source side of a RESET job
    destination_duckdb   the embedded default destination, one DuckDB table per stream
    destination_jsonl    one JSON-lines file per stream
    destination_devnull  discards records, echoes states

The modules starting with an underscore hold what they share: command-line handling and output
(``_runtime``), configured catalogs and states (``_catalog``) and the destinations' input loop
(``_destination``).
"""
