"""Shared-memory page mechanics, used by every process: the page region, page table, handles.

The *page region* is one daemon's memfd of shared pages (users know it as the shared-memory
pool; in code "pool" means actor pools). The daemon's side of it (owning the region,
serving the channel, reclaiming on death) is ``_kernel.pages_service``; nothing here is
daemon-only code or imports above ``_rpc``'s level.

settings.py   the ``[pages]`` config section, region sizing against /dev/shm and free memory
layout.py     the region's file: header, per-page table (generation, run length), mappings
allocator.py  first-fit allocation of page runs
table.py      the page table: blocks, holders, transfers, quarantine
store.py      the object store and its spill directory
channel.py    framing of the per-process unix-socket channel to the daemon
ring.py       the per-process note ring (notes without a system call)
mapping.py    a process's attachment: mapping, channel, lease bookkeeping
client.py     PageClient: allocate (arenas), send, receive, store
handles.py    encode/decode of page handles (wire payloads, validation)
codec.py      the page-aware ``ArrayCodec`` that clients, actors and replies use
cuda.py       CUDA tensors by CUDA IPC handle (torch's own sharing)
"""
