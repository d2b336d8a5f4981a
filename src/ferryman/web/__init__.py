"""Ferryman's web UI: server-rendered pages on the same FastAPI app as the HTTP API.

app.py          mount(): sessions, CSRF, rendering, login and logout
session.py      the signed session cookie, the CSRF token, the key kept in FERRYMAN_HOME
connections.py  the connections list, a new connection, a connection and its actions
jobs.py         the jobs list, a job with its attempts, its live log (SSE) and download
actors.py       sources and destinations, their "new" form, "Test connection"
forms.py        a connector's spec as a form, and the form back as a config
pages.py        what each page shows, read from the job service (masked)
schedule.py     a connection's schedule (Airbyte's shape) in and out of the form
filters.py      template filters: times, durations, sizes
templates/, static/   the pages and their one CSS and one JS file (package data)

It never imports ``ferryman.api`` (the surfaces stay apart): ``ferryman.entry`` hands
:func:`ferryman.web.app.mount` to the server, which calls it on the app it builds.
"""
