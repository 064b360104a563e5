"""The backend's API key on the proxy: where it is read from, and whether a client presents it.

Under systemd the unit's drop-in says LoadCredential=api-key:PATH, so that the DynamicUser
proxy reads a file only root may read; by hand, [proxy.NAME] api_key_file is read directly.
The key is never logged, and a client's key is compared in constant time.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from sleepyllama import systemd
from sleepyllama.config import ConfigError, ProxyConfig

CREDENTIAL = "api-key"  # the name in LoadCredential=api-key:PATH (install.sh writes it)
MAX_KEY = 4096


def read(config: ProxyConfig) -> str | None:
    """The key, or None when the backend wants none; ConfigError when it cannot be read."""
    if config.api_key_file is None:
        return None
    path = systemd.credential_or(CREDENTIAL, Path(config.api_key_file))
    where = f"[proxy.{config.name}] api_key_file: {path}"
    try:
        words = path.read_text(encoding="utf-8")[: MAX_KEY + 1].split()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: cannot read it ({getattr(error, 'strerror', None) or error}"
                          "; sudo ./install.sh proxy ... --api-key-file FILE sets it up)") from None
    if not words or len(words[0]) > MAX_KEY:
        raise ConfigError(f"{where}: holds no key (one line: the key llama-server's --api-key has)")
    return words[0]


def presented(headers: list[tuple[bytes, bytes]]) -> str:
    """The key a request presents, exactly as llama-server 0c1e570 reads it (measured against
    it: tests/kinds/test_real_llama_server.py): the Authorization header when it is there and not
    empty, else X-Api-Key; then an exact "Bearer " taken off its front. So "Authorization: KEY"
    is a key too, "bearer KEY" is not, and a wrong Authorization beats a right X-Api-Key."""
    first: dict[bytes, bytes] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value.strip())
    key = first.get(b"authorization") or first.get(b"x-api-key", b"")
    return key.removeprefix(b"Bearer ").decode("latin-1")


def matches(key: str | None, offered: str) -> bool:
    """Whether a client may have answers kept for a backend with this key (None: anyone)."""
    if key is None:
        return True
    return hmac.compare_digest(offered.encode("latin-1", "replace"), key.encode("latin-1", "replace"))
