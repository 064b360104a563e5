"""Can the box sleep as [idle] action says: logind's answer, and why not for hibernation."""

from sleepyllama.host.sleep_support import advice, swap_areas

SWAPS = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
         "/swap.img                               file\t\t8388604\t\t0\t\t-2\n")
NO_SWAPS = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


def test_what_logind_says_yes_to_is_good() -> None:
    found = advice("suspend", "yes", NO_SWAPS, "BOOT_IMAGE=/vmlinuz root=/dev/sda1")
    assert found.good == ['[idle] action = "suspend": logind can suspend this box']
    assert not found.errors and not found.warnings


def test_hibernation_without_swap_or_resume_says_both() -> None:
    found = advice("hibernate", "na", NO_SWAPS, "root=/dev/sda1 quiet")
    assert len(found.errors) == 1
    error = found.errors[0]
    assert 'logind answers CanHibernate "na"' in error
    assert "no swap" in error and "no resume=" in error and "stay up" in error
    with_swap = advice("suspend-then-hibernate", "no", SWAPS, "root=/dev/sda1 resume=/dev/sda2")
    assert "CanSuspendThenHibernate" in with_swap.errors[0]
    assert "no swap" not in with_swap.errors[0] and "resume=" not in with_swap.errors[0]


def test_a_power_off_reminds_of_the_firmware_setting() -> None:
    found = advice("poweroff", "yes", NO_SWAPS, "")
    assert found.good and "Power On by PCI-E" in found.warnings[0]


def test_swap_areas_reads_proc_swaps() -> None:
    assert swap_areas(SWAPS) == ["/swap.img"] and swap_areas(NO_SWAPS) == [] and swap_areas("") == []
