"""The ways the box sleeps (sleep_actions.py): what each promises holds together, and a name this
version does not know reads as a suspend."""

from __future__ import annotations

import pytest

from sleepyllama import config, sleep_actions


def test_a_name_this_version_does_not_know_reads_as_a_suspend() -> None:
    """A newer box's "sleeping" hint may name an action this proxy never heard of."""
    assert sleep_actions.get("") is sleep_actions.ACTIONS["suspend"]
    assert sleep_actions.get("hybrid-sleep-of-2030").name == sleep_actions.DEFAULT == "suspend"


@pytest.mark.parametrize("action", list(sleep_actions.ACTIONS.values()), ids=lambda a: a.name)
def test_what_each_action_says_holds_together(action: sleep_actions.SleepAction) -> None:
    # memory kept across a power-off only through swap; else the box boots
    if action.powered_off:
        assert action.needs_swap or not action.resumes
    # a box that boots is not given up on before a boot can have ended
    if not action.resumes:
        assert action.typical_wake < sleep_actions.COLD_BOOT_WAKE_TIMEOUT
    assert action.typical_wake > 0 and action.logind and action.asleep_words


def test_the_config_takes_exactly_these_actions() -> None:
    for name in sleep_actions.ACTIONS:
        assert config.parse(f'[idle]\naction = "{name}"\n').idle.action == name
    with pytest.raises(config.ConfigError, match="action"):
        config.parse('[idle]\naction = "hybrid-sleep"\n')
