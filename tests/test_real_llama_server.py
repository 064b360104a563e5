"""The wake path against a real llama-server, when LLAMA_SERVER names its binary and
LLAMA_MODEL a GGUF model (any small one does). Skipped, with the reason, otherwise: CI has no
llama.cpp build and no model (PyPI ships llama.cpp only as source, too slow to build there)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from conftest import MAC, WOL_LISTENER, Process, ProxyRun, chat_request, free_port, proxy_table, wait_for

BINARY, MODEL = os.environ.get("LLAMA_SERVER", ""), os.environ.get("LLAMA_MODEL", "")


@pytest.mark.skipif(not (BINARY and os.access(BINARY, os.X_OK) and Path(MODEL).is_file()),
                    reason="set LLAMA_SERVER=/path/to/llama-server and LLAMA_MODEL=/path/to/model.gguf "
                    "to run the proxy against a real llama-server")
def test_real_llama_server_woken_through_the_proxy(tmp_path: Path, cleanup: list) -> None:
    port, wol_port = free_port(), free_port(socket.SOCK_DGRAM)
    nic = Process([sys.executable, str(WOL_LISTENER), "--port", str(wol_port), "--mac", MAC, "--",
                   BINARY, "-m", MODEL, "--host", "127.0.0.1", "--port", str(port), "-c", "512"],
                  tmp_path / "llama-server.log")
    cleanup.append(nic)
    wait_for(lambda: "listening" in nic.text(), what="the wake listener")
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"127.0.0.1:{port}", wol_port=wol_port,
                                           wake_timeout="5m"))
    cleanup.append(proxy)
    with socket.create_connection(proxy.address, timeout=300) as sock:
        sock.sendall(chat_request(stream=True).replace(b'"content": "hi"', b'"content": "Say hi"'))
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response[:300]
    assert b"data: " in response and b"[DONE]" in response
    assert "ready after" in proxy.log()
