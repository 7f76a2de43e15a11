"""Durable state: the journal of what the daemon should bring back after a restart, and snapshots.

``journal`` (SQLite, WAL) records the desired state; ``schema`` its tables and migrations;
``snapshots`` actors' saved values as files; ``recovery`` replays the journal at start;
``service`` hooks all of it into the daemon; ``jsonable`` is the export format.
"""
