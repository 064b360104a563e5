"""The one HTTP session every request of ours goes through, on either host."""

from __future__ import annotations

import requests

# no proxies from the environment: every request of ours must reach the LAN address itself
http = requests.Session()
http.trust_env = False
