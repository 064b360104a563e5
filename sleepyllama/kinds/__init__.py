"""The kinds of model server sleepyllama knows, each one module that both hosts ask.

  llama-server  llama.cpp's server, one model or router mode          kinds/llama_server.py
  ollama        Ollama                                                kinds/ollama.py
  llama-swap    llama-swap in front of llama-server and others        kinds/llama_swap.py
  vllm          vLLM's OpenAI-compatible server                       kinds/vllm.py
  none          anything else: ready on /health, requests unseen      kinds/none.py
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sleepyllama.kinds import llama_server, llama_swap, none, ollama, vllm
from sleepyllama.kinds.base import Kind

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    llama_server.KIND, llama_swap.KIND, ollama.KIND, vllm.KIND, none.KIND)}
NAMES = tuple(KINDS)


def get(name: str) -> Kind:
    return KINDS[name]


def detect(command: Sequence[str]) -> Kind:
    """The kind a command runs, from its program; "none" when sleepyllama does not know it."""
    return next((kind for kind in KINDS.values() if kind.recognises(command)), none.KIND)


def look_only(kind: str) -> tuple[str, ...]:
    """The requests answered from the cache while asleep: a kind's own, or for "auto" those of
    every kind (a request the backend does not know is answered 404 and never kept)."""
    chosen = KINDS.values() if kind == "auto" else (KINDS[kind],)
    return tuple(dict.fromkeys(request for k in chosen for request in k.look_only))


def ready_paths(kind: str) -> tuple[str, ...]:
    """Where a backend of this kind says it is ready; for "auto" each kind's, tried in order."""
    chosen = KINDS.values() if kind == "auto" else (KINDS[kind],)
    return tuple(dict.fromkeys(k.ready_path for k in chosen))


def identify(answered: Iterable[str]) -> str | None:
    """The kind of a backend from the look-only requests it answered (paths): the kind whose
    own requests, asked of no other kind, are among them (Ollama's /api/tags, llama-server's
    /props); None when they tell nothing (every kind answers /v1/models)."""
    asked = {f"GET {target}" for target in answered}
    for own in KINDS.values():
        others = {r for k in KINDS.values() if k is not own for r in k.look_only}
        if asked & (set(own.look_only) - others - {f"GET {t}" for t in own.asleep_answers}):
            return own.name
    return None


def asleep_answers(kind: str, cached: Iterable[str]) -> dict[str, tuple[str, bytes]]:
    """Fixed answers for a backend of this kind while it sleeps; for "auto", once the backend's
    answers say which kind it is."""
    known = kind if kind != "auto" else identify(cached)
    return dict(KINDS[known].asleep_answers) if known else {}


def needs_key(kind: str, method: str, path: str) -> bool:
    """Whether a backend of this kind, given an API key, refuses this request without it; for
    "auto", whether every kind that takes a key would (a chat does, for each)."""
    chosen = KINDS.values() if kind == "auto" else (KINDS[kind],)
    said = [answer for k in chosen if (answer := k.needs_key(method, path)) is not None]
    return bool(said) and all(said)


def all_asleep_answers() -> set[str]:
    return {target for kind in KINDS.values() for target in kind.asleep_answers}
