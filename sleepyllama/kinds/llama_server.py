"""llama.cpp's llama-server, with one model (-m) or in router mode (no model on its command:
--models-dir or --models-preset; llama.cpp's own multi-model serving).

Read without loading a model (measured against the real server, tests/kinds/test_real_llama_server.py):
/health, /props, /models and /metrics are exempt from --sleep-idle-seconds and never load one;
GET /slots is a task (it wakes a sleeping model, and each read postpones its sleep). In router
mode /metrics and /props want ?model=ID, and on an unloaded model they load it unless
&autoload=false is given: so /models is read first, and only loaded models are asked.
With --api-key only /health is public; the key is read from the command and sent with each read.

  in flight      /metrics requests_processing + requests_deferred
  work counter   /metrics tokens; every other counter in the fingerprint (printed with 6
                 significant digits, a short request past 1e6 tokens may not move the tokens)
  unloaded       /props is_sleeping (--sleep-idle-seconds); router: no model loaded
  without --metrics: /slots, only while awake and never in the supervisor's frequent looks
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from sleepyllama.kinds.base import (
    BrokenSource,
    GpuLine,
    HttpSource,
    Kind,
    Look,
    Source,
    Unreadable,
    flag_value,
    llama_cpp_gpu_line,
    totals,
)

MODEL_FLAGS = ("-m", "--model", "-hf", "--hf-repo", "-hfr", "-mu", "--model-url", "-dr",
               "--docker-repo")


def is_router(command: Sequence[str]) -> bool:
    """Router mode: llama-server started without a model."""
    return not any(flag_value(command, flag) for flag in MODEL_FLAGS)


def metrics(text: str) -> tuple[int, int, str]:
    """(requests in flight, tokens processed so far, fingerprint of every counter); cached
    prompt tokens count too: a request whose whole prompt was cached is still a request."""
    return totals(text, "llamacpp:", ("requests_processing", "requests_deferred"),
                  ("prompt_tokens_total", "tokens_predicted_total"), ("prompt_tokens_cached_total",))


def slots(answer: object) -> tuple[int, str]:
    """(slots processing, a fingerprint of the tasks they served) from /slots: each new request
    gets a new id_task on its slot."""
    if not isinstance(answer, list) or not all(isinstance(slot, dict) for slot in answer):
        raise Unreadable("/slots is not a list of slots")
    try:
        processing = sum(bool(slot["is_processing"]) for slot in answer)
    except KeyError:
        raise Unreadable("a slot in /slots has no is_processing") from None
    return processing, ",".join(str(slot.get("id_task", -1)) for slot in answer)


def sleeping(props: object) -> bool:
    """--sleep-idle-seconds unloads the model and says so in /props."""
    if not isinstance(props, dict):
        raise Unreadable("/props is not an object")
    return props.get("is_sleeping") is True


def router_models(answer: object) -> list[tuple[str, str]]:
    """(id, status) of each model in a router's /models: "loaded", "loading" or "unloaded"."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not all(isinstance(model, dict) for model in data):
        raise Unreadable("/models has no data list")
    models = []
    for model in data:
        status = model.get("status")
        value = status.get("value") if isinstance(status, dict) else None
        if not isinstance(model.get("id"), str) or not isinstance(value, str):
            raise Unreadable("/models: a model without an id or a status value")
        models.append((model["id"], value))
    return models


class LlamaServerSource(HttpSource):
    kind = "llama-server"

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 5.0,
                 read_slots: bool = True) -> None:
        super().__init__(base_url, api_key, timeout)
        self.read_slots = read_slots

    def read(self) -> Look:
        props = self.get("/props")
        if props.status == 503:
            return Look(loading=True)
        if props.status == 400:  # "model name is missing": a router
            return self.read_router()
        answer = self.json(props, "/props")
        if isinstance(answer, dict) and answer.get("role") == "router":
            return self.read_router()
        unloaded = "model unloaded (llama-server sleeping)" if sleeping(answer) else ""
        answer_metrics = self.get("/metrics")
        if answer_metrics.status == 200:
            in_flight, tokens, fingerprint = metrics(answer_metrics.text)
            return Look(unloaded=unloaded, in_flight=in_flight, work=tokens, work_unit="tokens",
                        epoch=answer_metrics.headers.get("process-start-time-unix", ""),
                        fingerprint=fingerprint)
        if answer_metrics.status != 501:
            raise Unreadable(f"/metrics answered HTTP {answer_metrics.status}")
        if unloaded or not self.read_slots:
            return Look(unloaded=unloaded)  # /slots would wake it: nothing more to read
        answer_slots = self.get("/slots")
        if answer_slots.status == 501:
            raise Unreadable("/metrics and /slots are both off: start llama-server with --metrics")
        processing, tasks = slots(self.json(answer_slots, "/slots"))
        return Look(in_flight=processing, work=tasks, work_unit="tasks")

    def read_router(self) -> Look:
        models = router_models(self.json(self.get("/models"), "/models"))
        loaded = [model for model, status in models if status == "loaded"]
        count = f"{len(loaded)} of {len(models)} model{'' if len(models) == 1 else 's'} loaded"
        if any(status == "loading" for _, status in models):
            return Look(loading=True, models=count)
        in_flight, tokens, fingerprints, awake = 0, 0, [], 0
        for model in loaded:
            query = f"?model={quote(model, safe='')}&autoload=false"
            answer = self.get("/metrics" + query)
            if answer.status == 400:
                continue  # unloaded since /models was read: asking again would not load it
            if answer.status == 404:
                # /models says loaded, /metrics knows no such model: not "unloaded", unknown
                raise Unreadable(f"/models lists {model} as loaded, but /metrics?model= "
                                 "answered 404")
            if answer.status == 501:
                raise Unreadable("/metrics is off: start llama-server with --metrics")
            if answer.status != 200:
                raise Unreadable(f"/metrics?model={model} answered HTTP {answer.status}")
            model_in_flight, model_tokens, fingerprint = metrics(answer.text)
            in_flight, tokens = in_flight + model_in_flight, tokens + model_tokens
            fingerprints.append(f"{model}={fingerprint}")
            props = self.get("/props" + query)
            awake += props.status != 200 or not sleeping(self.json(props, "/props"))
        unloaded = "" if awake else ("no model loaded (llama-server router)" if not loaded else
                                     "every model unloaded (llama-server sleeping)")
        # a model loaded or unloaded since the last look starts its counters again
        return Look(unloaded=unloaded, in_flight=in_flight, work=tokens, work_unit="tokens",
                    epoch=",".join(loaded), fingerprint=";".join(fingerprints), models=count)


class LlamaServer(Kind):
    name = "llama-server"
    programs = ("llama-server",)
    default_port = 8080
    ready_path = "/health"  # 503 "Loading model" until it serves
    listens_within = 30.0  # it listens before it loads the model (503 "Loading model" meanwhile)
    # 0c1e570, measured: "srv  llama_server: model loaded", then "... listening on http://..."
    ready_line = re.compile(r"llama_server: (model loaded|listening on)|server is listening on")
    # SillyTavern's text completion asks /props; Open WebUI and LibreChat the model list
    look_only = ("GET /v1/models", "GET /models", "GET /props")
    shows = ("requests counted from /metrics, model sleep from /props (router mode: the models "
             "from /models, then each loaded model's /metrics)")

    def listen_everywhere(self, port: str) -> str | None:
        return "give the server --host 0.0.0.0 (or this box's LAN address)"

    def needs_key(self, method: str, path: str) -> bool | None:
        # measured against the real one with --api-key: only /health and /v1/health answer
        # without it (401 for /models, /props, /metrics, chats); CORS preflights pass
        return method != "OPTIONS" and path not in ("/health", "/v1/health")

    def key_file(self, command: Sequence[str]) -> str | None:
        return flag_value(command, "--api-key-file")

    def api_key(self, command: Sequence[str]) -> str | None:
        key = flag_value(command, "--api-key")
        key_file = flag_value(command, "--api-key-file")
        if key:
            return key.split(",")[0].strip() or None  # several keys, comma-separated: any works
        if key_file:
            try:
                lines = Path(key_file).read_text().split()
            except OSError as error:
                raise Unreadable(f"cannot read --api-key-file {key_file}: "
                                 f"{error.strerror or error}") from None
            return lines[0] if lines else None
        return None

    def source(self, base_url: str, command: Sequence[str], timeout: float = 5.0,
               gentle: bool = False) -> Source:
        try:
            key = self.api_key(command)
        except Unreadable as error:
            return BrokenSource(str(error))
        return LlamaServerSource(base_url, key, timeout, read_slots=not gentle)

    def gpu_line(self, line: str) -> GpuLine | None:
        return llama_cpp_gpu_line(line)

    def wants_gpu(self, command: Sequence[str]) -> bool:
        layers = flag_value(command, "-ngl", "--gpu-layers", "--n-gpu-layers")
        return layers is not None and layers.strip() not in ("0", "")

    def advice(self, command: Sequence[str]) -> list[str]:
        if "--metrics" in command:
            return []
        if is_router(command):
            return ["llama-server runs in router mode without --metrics: the idle check cannot "
                    "read its models' requests (add --metrics to its command)"]
        return ["llama-server runs without --metrics: the idle check must read /slots instead, "
                "which counts as use and keeps llama-server's own --sleep-idle-seconds from ever "
                "unloading the model (add --metrics to its command)"]


KIND = LlamaServer()
