"""Ferryman's HTTP API: Airbyte's public API as a thin surface over the job service and store.

app.py        the ASGI app: prefixes, auth, health and token, an access line per request
actors.py     workspaces, sources, destinations
jobs.py       connections, streams, jobs
documents.py  rows as Airbyte's JSON documents (masked, nulls omitted)
problems.py   errors as application/problem+json
server.py     ``ferryman server``: uvicorn plus the local engine in one process
"""
