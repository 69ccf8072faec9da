"""Benchmarks: each script prints its own table; `make bench` runs them all."""

from __future__ import annotations

import urllib.parse


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database the URL names if it is not there yet, so a bench runs on a new machine."""
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    name = parts.path.lstrip("/")
    with psycopg.connect(urllib.parse.urlunsplit(parts._replace(path="/postgres")), autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
