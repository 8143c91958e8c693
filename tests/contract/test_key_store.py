"""Contract of the key store port (crypto-shredding), run against every adapter."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.exceptions import InvalidTag
from mlplane import keystore as ks
from mlplane.keystore import ForgottenSubject, KeyStore


async def test_a_subject_without_a_key_has_none(key_store: KeyStore):
    assert await key_store.get("user:1") is None


async def test_create_makes_a_256_bit_key_that_get_returns(key_store: KeyStore):
    key = await key_store.create("user:1")
    assert isinstance(key, bytes) and len(key) == 32
    assert await key_store.get("user:1") == key


async def test_create_is_idempotent(key_store: KeyStore):
    assert await key_store.create("user:1") == await key_store.create("user:1")


async def test_concurrent_creates_agree_on_one_key(key_store: KeyStore):
    keys = await asyncio.gather(*(key_store.create("user:1") for _ in range(10)))
    assert len(set(keys)) == 1
    assert await key_store.get("user:1") == keys[0]


async def test_subjects_have_their_own_keys(key_store: KeyStore):
    assert await key_store.create("user:1") != await key_store.create("user:2")


async def test_forget_destroys_the_key(key_store: KeyStore):
    await key_store.create("user:1")
    other = await key_store.create("user:2")
    await key_store.forget("user:1")
    assert await key_store.get("user:1") is None
    assert await key_store.get("user:2") == other


async def test_a_forgotten_subject_is_never_re_keyed(key_store: KeyStore):
    await key_store.create("user:1")
    await key_store.forget("user:1")
    with pytest.raises(ForgottenSubject):
        await key_store.create("user:1")
    assert await key_store.get("user:1") is None


async def test_a_subject_forgotten_before_it_had_a_key_is_never_keyed(key_store: KeyStore):
    await key_store.forget("user:9")
    with pytest.raises(ForgottenSubject):
        await key_store.create("user:9")


async def test_forget_is_idempotent(key_store: KeyStore):
    await key_store.create("user:1")
    await key_store.forget("user:1")
    await key_store.forget("user:1")
    assert await key_store.get("user:1") is None


async def test_a_value_sealed_with_a_key_opens_only_with_that_key(key_store: KeyStore):
    key = await key_store.create("user:1")
    sealed = ks.encrypt(key, "user:1", {"email": "a@example.com"})
    assert ks.is_encrypted(sealed) and "a@example.com" not in sealed
    assert ks.subject_of(sealed) == "user:1"
    assert ks.decrypt(await key_store.get("user:1"), sealed) == {"email": "a@example.com"}
    with pytest.raises(InvalidTag):
        ks.decrypt(await key_store.create("user:2"), sealed)


async def test_the_keys_survive_reopening_the_store(backend):
    key = await backend.key_store().create("user:1")
    assert await backend.key_store().get("user:1") == key
