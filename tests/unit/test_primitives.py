"""exchange.core.primitives: keys, signatures, HPKE wrapping, AEAD, passphrase sealing, TLS keys."""

from __future__ import annotations

import pytest

from exchange.core import errors, primitives
from exchange.core.model import Algorithm

SIGNING = [Algorithm.ED25519, Algorithm.ML_DSA_65]
KEM = [Algorithm.X25519, Algorithm.ML_KEM_768_X25519]
PRIVATE_SIZE = {
    Algorithm.ED25519: 32,
    Algorithm.ML_DSA_65: 32,
    Algorithm.X25519: 32,
    Algorithm.ML_KEM_768_X25519: 96,
}
PUBLIC_SIZE = {
    Algorithm.ED25519: 32,
    Algorithm.ML_DSA_65: 1952,
    Algorithm.X25519: 32,
    Algorithm.ML_KEM_768_X25519: 1216,
}


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=lambda a: a.name)
def test_key_round_trip_and_sizes(algorithm):
    key = primitives.generate(algorithm)
    raw = primitives.private_bytes(key)
    assert len(raw) == PRIVATE_SIZE[algorithm]
    again = primitives.load_private(algorithm, raw)
    assert primitives.public_bytes(again) == primitives.public_bytes(key)
    assert len(primitives.public_bytes(key)) == PUBLIC_SIZE[algorithm]
    assert raw.hex() not in repr(key)
    assert algorithm.name in repr(key)


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=lambda a: a.name)
@pytest.mark.parametrize("size", [0, 31, 33, 95, 97], ids=lambda n: f"{n}-bytes")
def test_load_private_refuses_wrong_sizes(algorithm, size):
    if size == PRIVATE_SIZE[algorithm]:
        pytest.skip("right size")
    with pytest.raises(errors.CodecError):
        primitives.load_private(algorithm, bytes(size))


def test_key_id_is_truncated_sha256_of_algorithm_and_public():
    assert (
        primitives.key_id(Algorithm.ED25519, b"\x01" * 32)
        == primitives.sha256(b"\x01" + b"\x01" * 32)[:16].hex()
    )
    assert primitives.key_id(Algorithm.ED25519, b"k") != primitives.key_id(Algorithm.X25519, b"k")


@pytest.mark.parametrize("algorithm", SIGNING, ids=lambda a: a.name)
def test_sign_verify(algorithm):
    key = primitives.generate(algorithm)
    pub = primitives.public_bytes(key)
    sig = primitives.sign(key, b"message", "envelope-header")
    primitives.verify(algorithm, pub, sig, b"message", "envelope-header")
    other = primitives.public_bytes(primitives.generate(algorithm))
    for args in [
        (pub, sig, b"messagE", "envelope-header"),
        (pub, sig, b"message", "statement"),  # domain separation
        (other, sig, b"message", "envelope-header"),
        (pub, sig[:-1], b"message", "envelope-header"),
        (pub[:-1], sig, b"message", "envelope-header"),  # malformed public key
    ]:
        with pytest.raises(errors.SignatureError):
            primitives.verify(algorithm, *args)


def test_verify_refuses_non_signing_algorithm():
    with pytest.raises(errors.SignatureError):
        primitives.verify(Algorithm.X25519, bytes(32), bytes(64), b"m", "c")


def test_sign_refuses_kem_key():
    with pytest.raises(TypeError):
        primitives.sign(primitives.generate(Algorithm.X25519), b"m", "c")


@pytest.mark.parametrize("algorithm", KEM, ids=lambda a: a.name)
def test_wrap_unwrap(algorithm):
    key = primitives.generate(algorithm)
    secret = primitives.random_bytes(32)
    enc = primitives.wrap(algorithm, primitives.public_bytes(key), secret, b"info")
    assert primitives.unwrap(key, enc, b"info") == secret
    with pytest.raises(errors.DecryptError):
        primitives.unwrap(key, enc, b"other info")
    with pytest.raises(errors.DecryptError):
        primitives.unwrap(primitives.generate(algorithm), enc, b"info")
    with pytest.raises(errors.DecryptError):
        primitives.unwrap(key, enc[:-1], b"info")
    with pytest.raises(errors.DecryptError):
        primitives.unwrap(key, enc[:10], b"info")
    with pytest.raises(errors.CodecError):
        primitives.wrap(algorithm, primitives.public_bytes(key)[:-1], secret, b"info")


def test_wrap_refuses_signing_algorithm():
    with pytest.raises(errors.CodecError):
        primitives.wrap(Algorithm.ED25519, bytes(32), b"s", b"")
    with pytest.raises(errors.DecryptError):
        primitives.unwrap(primitives.generate(Algorithm.ED25519), bytes(80), b"")


def test_aead():
    key = primitives.random_bytes(32)
    blob = primitives.aead_seal(key, b"plaintext", b"aad")
    assert len(blob) == 12 + 9 + 16
    assert primitives.aead_open(key, blob, b"aad") == b"plaintext"
    assert primitives.aead_seal(key, b"plaintext", b"aad") != blob  # fresh nonce
    for bad_key, bad_blob, bad_aad in [
        (key, blob, b"aaD"),
        (primitives.random_bytes(32), blob, b"aad"),
        (key, blob[:-1] + bytes([blob[-1] ^ 1]), b"aad"),
        (key, blob[:20], b"aad"),
        (key[:16], blob, b"aad"),
    ]:
        with pytest.raises(errors.DecryptError):
            primitives.aead_open(bad_key, bad_blob, bad_aad)


def test_passphrase_seal():
    blob = primitives.passphrase_seal(b"secret key", b"correct horse")
    assert b"secret key" not in blob
    assert blob[0] == 1  # version byte
    assert primitives.passphrase_open(blob, b"correct horse") == b"secret key"
    with pytest.raises(errors.WrongPassphraseError):
        primitives.passphrase_open(blob, b"wrong")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:20],
        lambda b: b"\x02" + b[1:],
        lambda b: b[:1] + b"\x30" + b[2:],  # scrypt n = 2**48: refused, not attempted
        lambda b: b"",
    ],
    ids=["truncated", "unknown-version", "absurd-cost", "empty"],
)
def test_passphrase_open_refuses_corrupt_blob(mangle):
    blob = primitives.passphrase_seal(b"secret key", b"pw")
    with pytest.raises(errors.KeystoreError) as info:
        primitives.passphrase_open(mangle(blob), b"pw")
    assert type(info.value) is errors.KeystoreError


@pytest.mark.parametrize("passphrase", [None, b"tls pass"], ids=["clear", "encrypted"])
def test_tls_key_pem(passphrase):
    key = primitives.new_tls_key()
    pem = primitives.tls_key_pem(key, passphrase)
    assert pem.startswith(b"-----BEGIN " + (b"ENCRYPTED " if passphrase else b"") + b"PRIVATE KEY-----")
    loaded = primitives.load_tls_key_pem(pem, passphrase)
    assert loaded.private_numbers() == key.private_numbers()
    assert primitives.tls_public_key(loaded) == key.public_key()


def test_tls_key_pem_errors():
    pem = primitives.tls_key_pem(primitives.new_tls_key(), b"right")
    with pytest.raises(errors.WrongPassphraseError):
        primitives.load_tls_key_pem(pem, b"wrong")
    with pytest.raises(errors.WrongPassphraseError):
        primitives.load_tls_key_pem(pem, None)
    with pytest.raises(errors.KeystoreError):
        primitives.load_tls_key_pem(
            b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", None
        )
