"""Request/reply machinery shared by clients, actors and the daemon: loops, connections, servers."""
