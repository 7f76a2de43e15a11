"""Wire format: frames, headers, msgpack bodies. Imports only ``errors``; knows no socket policy."""
