"""The ciphers the deployer offers: AES-GCM first (cheapest per packet), nothing dropped."""

from __future__ import annotations

from asyncssh.encryption import get_default_encryption_algs

from edeliver.adapters.node.ssh_connect import ENCRYPTION_ALGS


def test_aes_gcm_is_preferred_and_every_default_cipher_is_still_offered() -> None:
    defaults = [alg.decode() for alg in get_default_encryption_algs()]
    assert ENCRYPTION_ALGS[:2] == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    assert sorted(ENCRYPTION_ALGS) == sorted(defaults)
    assert ENCRYPTION_ALGS[2:] == [alg for alg in defaults if alg not in ENCRYPTION_ALGS[:2]]
