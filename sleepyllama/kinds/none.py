"""Any other server (whisper-server, an OpenAI-compatible server sleepyllama does not know):
ready when /health answers 200, its requests unseen; the GPU and sleep inhibitors decide."""

from __future__ import annotations

from sleepyllama.kinds.base import Kind


class Other(Kind):
    name = "none"
    look_only = ("GET /v1/models", "GET /models")
    sees_requests = False
    cannot_show = ("no request is seen at all: only the GPU and sleep inhibitors can keep the box "
                   "up while it serves")


KIND = Other()
