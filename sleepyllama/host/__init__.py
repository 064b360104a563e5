"""The inference host (the GPU box): the server supervisor, the idle check, the sleep sequence
and the system-sleep hook."""
