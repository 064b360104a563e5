"""Small words for people."""

from sleepyllama.words import count


def test_count() -> None:
    assert count(1, "clients") == "1 client" and count(2, "clients") == "2 clients"
    assert count(0, "restarts") == "0 restarts" and count(1, "restart") == "1 restart"
    assert count(3, "request") == "3 requests"
