"""What every idle signal shares (host/signals/base.py): each is a Signal with a name of its
own (the journal and `sleepyllama status` name a reading by it), and an unreadable one is
UNKNOWN, a word apart from idle."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from sleepyllama.host import signals
from sleepyllama.host.signals.base import Activity, Reading


def signal_classes() -> list[type]:
    found = []
    for module in pkgutil.iter_modules(signals.__path__):
        if module.name == "base":
            continue
        loaded = importlib.import_module(f"{signals.__name__}.{module.name}")
        found += [value for value in vars(loaded).values() if inspect.isclass(value)
                  and value.__module__ == loaded.__name__ and isinstance(
                      getattr(value, "name", None), str) and callable(getattr(value, "read", None))]
    return found


def test_every_module_holds_a_signal_and_each_kind_of_reading_has_one_name() -> None:
    classes = signal_classes()
    modules = {cls.__module__.rsplit(".", 1)[1] for cls in classes}
    assert modules == {module.name for module in pkgutil.iter_modules(signals.__path__)} - {"base"}
    for cls in classes:
        assert inspect.signature(cls.read).return_annotation in (Reading, "Reading"), cls
    names = {cls.name for cls in classes}
    # two GPU readings (nvidia-smi's, and the power draw's) are one signal, "gpu", to a person
    assert len(names) == len(classes) - 1 and "gpu" in names


def test_unknown_is_a_word_of_its_own() -> None:
    assert [activity.value for activity in Activity] == ["idle", "busy", "unknown"]
    reading = Reading("gpu", Activity.UNKNOWN, "nvidia-smi not found")
    assert reading.activity is not Activity.IDLE and reading.hint == ""
