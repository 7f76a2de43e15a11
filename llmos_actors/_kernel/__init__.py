"""The kernel daemon: process table, resources, fork server, logs, control service."""
