"""Password hashing and the defender's scoring, without sockets."""

from __future__ import annotations

import pytest

from sftp_server.auth import Defender, hash_password, verify_password


def test_a_password_verifies_against_its_own_hash_only():
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert hash_password("s3cret") != stored  # a fresh salt every time


@pytest.mark.parametrize("stored", ["", "plain", "bcrypt$1$2$3$YQ==$YQ==",
                                    "scrypt$x$8$1$YQ==$YQ==", "scrypt$16384$8$1$@@$YQ=="])
def test_malformed_stored_values_never_verify(stored):
    assert not verify_password("anything", stored)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_defender_bans_above_the_threshold_for_the_ban_time():
    time = FakeTime()
    defender = Defender(threshold=15, window_seconds=1800, ban_seconds=1800, now=time)
    for _ in range(7):
        defender.record_failure("10.0.0.1", unknown_user=True)  # 2 points each
    assert not defender.is_banned("10.0.0.1")  # 14 points
    defender.record_failure("10.0.0.1", unknown_user=False)
    assert not defender.is_banned("10.0.0.1")  # 15 is not above 15
    defender.record_failure("10.0.0.1", unknown_user=False)
    assert defender.is_banned("10.0.0.1") and not defender.is_banned("10.0.0.2")
    time.now += 1799
    assert defender.is_banned("10.0.0.1")
    time.now += 1
    assert not defender.is_banned("10.0.0.1")


def test_defender_forgets_failures_older_than_the_window():
    time = FakeTime()
    defender = Defender(threshold=3, window_seconds=60, now=time)
    for _ in range(3):
        defender.record_failure("10.0.0.1", unknown_user=False)
    time.now = 61
    defender.record_failure("10.0.0.1", unknown_user=False)  # the first three have expired
    assert not defender.is_banned("10.0.0.1")
    for _ in range(3):
        defender.record_failure("10.0.0.1", unknown_user=False)
    assert defender.is_banned("10.0.0.1")


def test_defender_tells_of_each_ban_it_decides_and_applies_bans_decided_elsewhere():
    time = FakeTime()
    told: list[tuple[str, float]] = []
    defender = Defender(threshold=1, ban_seconds=600, now=time,
                        on_ban=lambda address, seconds: told.append((address, seconds)))
    defender.record_failure("10.0.0.1", unknown_user=False)
    assert told == []
    defender.record_failure("10.0.0.1", unknown_user=False)
    assert told == [("10.0.0.1", 600)]
    defender.ban("10.0.0.2", 30)  # another process's defender decided it
    assert defender.is_banned("10.0.0.2") and told == [("10.0.0.1", 600)]
    time.now += 30
    assert not defender.is_banned("10.0.0.2") and defender.is_banned("10.0.0.1")
