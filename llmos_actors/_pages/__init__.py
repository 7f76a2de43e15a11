"""Shared-memory pages: one pool per daemon, a page table, tensors and arrays that travel as handles.

settings.py   the ``[pages]`` config section, pool sizing against /dev/shm and free memory
layout.py     the pool file: header, per-page table (generation, run length), mappings
allocator.py  first-fit allocation of page runs (daemon)
table.py      the daemon's page table: blocks, holders, transfers, quarantine
store.py      the object store and its spill directory (daemon)
channel.py    framing of the per-process unix-socket channel to the daemon
service.py    the daemon service: pool owner, channel server, reclaim on process death
client.py     a process's view of the pool: mapping, leases, arenas, channel
handles.py    encode/decode of page handles (wire payloads, validation)
codec.py      the pool-aware ``ArrayCodec`` that clients, actors and replies use
cuda.py       CUDA tensors by CUDA IPC handle (torch's own sharing)
bench.py      benchmark cases (tensor passing, put/get)
"""
