"""The always-on host: the socket-activated proxy that wakes the inference host and splices."""
