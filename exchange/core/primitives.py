"""Every cryptographic primitive Liaison uses, behind one small, auditable API.

This is the only module that imports ``cryptography.hazmat``. It offers
signing (Ed25519, ML-DSA-65) with domain separation, HPKE key wrapping
(X25519 or ML-KEM-768+X25519, HKDF-SHA256, ChaCha20-Poly1305), the content
AEAD, passphrase sealing of private keys (scrypt + ChaCha20-Poly1305) and the
ECDSA P-256 keys of the deployment's TLS PKI.

It does not decide which key to use, read files, or know about envelopes:
callers pass raw bytes and get raw bytes back. Failures come out as the
precise errors of ``exchange.core.errors``; no error text contains key bytes,
plaintext or passphrases.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from exchange.core import errors
from exchange.core.model import Algorithm

__all__ = [
    "AEAD_KEY_BYTES",
    "CERT_SIGNATURE_HASH",
    "PrivateKey",
    "TlsPrivateKey",
    "aead_open",
    "aead_open_at",
    "aead_seal",
    "aead_seal_at",
    "cert_pem",
    "generate",
    "key_id",
    "load_private",
    "load_tls_key_pem",
    "new_tls_key",
    "passphrase_open",
    "passphrase_seal",
    "private_bytes",
    "public_bytes",
    "random_bytes",
    "sha256",
    "sign",
    "tls_key_pem",
    "tls_public_key",
    "unwrap",
    "verify",
    "wrap",
]

AEAD_KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_SIGN_PREFIX: Final = b"liaison/v1/"
_MLKEM_SEED_BYTES: Final = 64
_X25519_BYTES: Final = 32
_MLKEM768_PUBLIC_BYTES: Final = 1184

_HPKE_CLASSIC: Final = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_HPKE_HYBRID: Final = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)

# Passphrase blob: version | log2(n) | r | p | salt(16) | nonce(12) | ciphertext+tag.
_PASS_VERSION: Final = 1
_PASS_LOG2_N: Final = 15
_PASS_R: Final = 8
_PASS_P: Final = 1
_PASS_SALT_BYTES: Final = 16
_PASS_HEADER: Final = struct.Struct(">BBBB")
_PASS_MAX_LOG2_N: Final = 20  # refuse blobs that would make scrypt eat gigabytes
_PASS_MAX_WORK: Final = (1 << _PASS_MAX_LOG2_N) * _PASS_R  # n * r * p: at most 1 GiB, ~10 s

TlsPrivateKey: TypeAlias = ec.EllipticCurvePrivateKey
CERT_SIGNATURE_HASH: Final = hashes.SHA256()


@dataclass(frozen=True)
class _HybridKem:
    mlkem: mlkem.MLKEM768PrivateKey
    x25519: x25519.X25519PrivateKey
    hpke: hpke.MLKEM768X25519PrivateKey


_Hazmat: TypeAlias = (
    ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey | x25519.X25519PrivateKey | _HybridKem
)


@dataclass(frozen=True, eq=False)
class PrivateKey:
    """An opaque private key of one ``Algorithm``; its repr never shows key bytes."""

    algorithm: Algorithm
    _key: _Hazmat = field(repr=False)

    def __repr__(self) -> str:
        return f"PrivateKey({self.algorithm.name}, key_id={key_id(self.algorithm, public_bytes(self))})"


# --- keys ------------------------------------------------------------------------


def generate(algorithm: Algorithm) -> PrivateKey:
    """A fresh private key of ``algorithm``."""
    if algorithm is Algorithm.ED25519:
        return PrivateKey(algorithm, ed25519.Ed25519PrivateKey.generate())
    if algorithm is Algorithm.ML_DSA_65:
        return PrivateKey(algorithm, mldsa.MLDSA65PrivateKey.generate())
    if algorithm is Algorithm.X25519:
        return PrivateKey(algorithm, x25519.X25519PrivateKey.generate())
    return _hybrid(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())


def _hybrid(kem: mlkem.MLKEM768PrivateKey, dh: x25519.X25519PrivateKey) -> PrivateKey:
    return PrivateKey(
        Algorithm.ML_KEM_768_X25519, _HybridKem(kem, dh, hpke.MLKEM768X25519PrivateKey(kem, dh))
    )


def private_bytes(key: PrivateKey) -> bytes:
    """Raw private bytes: seeds for ML-DSA (32) and ML-KEM (64 || X25519 32)."""
    k = key._key
    if isinstance(k, _HybridKem):
        return k.mlkem.private_bytes_raw() + k.x25519.private_bytes_raw()
    return k.private_bytes_raw()


def load_private(algorithm: Algorithm, data: bytes) -> PrivateKey:
    """The inverse of ``private_bytes``; raises CodecError on bytes of the wrong shape."""
    malformed = f"{algorithm.name} private key bytes are malformed ({len(data)} bytes)"
    if algorithm is Algorithm.ML_KEM_768_X25519 and len(data) != _MLKEM_SEED_BYTES + _X25519_BYTES:
        raise errors.CodecError(malformed)
    try:
        if algorithm is Algorithm.ED25519:
            return PrivateKey(algorithm, ed25519.Ed25519PrivateKey.from_private_bytes(data))
        if algorithm is Algorithm.ML_DSA_65:
            return PrivateKey(algorithm, mldsa.MLDSA65PrivateKey.from_seed_bytes(data))
        if algorithm is Algorithm.X25519:
            return PrivateKey(algorithm, x25519.X25519PrivateKey.from_private_bytes(data))
        return _hybrid(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(data[:_MLKEM_SEED_BYTES]),
            x25519.X25519PrivateKey.from_private_bytes(data[_MLKEM_SEED_BYTES:]),
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise errors.CodecError(
            f"{algorithm.name} private key bytes are malformed ({len(data)} bytes)"
        ) from e


def public_bytes(key: PrivateKey) -> bytes:
    """Raw public bytes (hybrid KEM: ML-KEM-768 public || X25519 public)."""
    k = key._key
    if isinstance(k, _HybridKem):
        return k.mlkem.public_key().public_bytes_raw() + k.x25519.public_key().public_bytes_raw()
    return k.public_key().public_bytes_raw()


def key_id(algorithm: Algorithm, public: bytes) -> str:
    """The key id: hex of the first 16 bytes of SHA-256(algorithm byte || public)."""
    return hashlib.sha256(bytes([algorithm]) + public).digest()[:16].hex()


# --- signatures ------------------------------------------------------------------


def _signed_message(message: bytes, context: str) -> bytes:
    return _SIGN_PREFIX + context.encode() + b"\x00" + message


def sign(key: PrivateKey, message: bytes, context: str) -> bytes:
    """Sign ``message`` under a domain-separation ``context`` (e.g. "envelope-header")."""
    k = key._key
    if not isinstance(k, ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey):
        raise TypeError(f"{key.algorithm.name} is not a signing algorithm")
    return k.sign(_signed_message(message, context))


def verify(algorithm: Algorithm, public: bytes, signature: bytes, message: bytes, context: str) -> None:
    """Return None when ``signature`` is valid, else raise SignatureError."""
    data = _signed_message(message, context)
    try:
        if algorithm is Algorithm.ED25519:
            ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
        elif algorithm is Algorithm.ML_DSA_65:
            mldsa.MLDSA65PublicKey.from_public_bytes(public).verify(signature, data)
        else:
            raise errors.SignatureError(f"{algorithm.name} is not a signing algorithm")
    except InvalidSignature as e:
        raise errors.SignatureError(f"{algorithm.name} signature does not verify ({context})") from e
    except (ValueError, TypeError) as e:
        raise errors.SignatureError(f"{algorithm.name} public key is malformed ({context})") from e


# --- key wrapping (HPKE, RFC 9180) -----------------------------------------------


def wrap(algorithm: Algorithm, public: bytes, secret: bytes, info: bytes) -> bytes:
    """HPKE single-shot encryption of ``secret`` to ``public``: enc || ciphertext."""
    if algorithm is Algorithm.ML_KEM_768_X25519 and len(public) != _MLKEM768_PUBLIC_BYTES + _X25519_BYTES:
        raise errors.CodecError(f"{algorithm.name} public key is malformed")
    try:
        if algorithm is Algorithm.X25519:
            return _HPKE_CLASSIC.encrypt(secret, x25519.X25519PublicKey.from_public_bytes(public), info=info)
        if algorithm is Algorithm.ML_KEM_768_X25519:
            pub = hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(public[:_MLKEM768_PUBLIC_BYTES]),
                x25519.X25519PublicKey.from_public_bytes(public[_MLKEM768_PUBLIC_BYTES:]),
            )
            return _HPKE_HYBRID.encrypt(secret, pub, info=info)
    except (ValueError, TypeError) as e:
        raise errors.CodecError(f"{algorithm.name} public key is malformed") from e
    raise errors.CodecError(f"{algorithm.name} is not a key-encapsulation algorithm")


def unwrap(key: PrivateKey, enc: bytes, info: bytes) -> bytes:
    """Open a ``wrap`` result with the recipient's private key; raises DecryptError."""
    k = key._key
    try:
        if isinstance(k, _HybridKem):
            return _HPKE_HYBRID.decrypt(enc, k.hpke, info=info)
        if isinstance(k, x25519.X25519PrivateKey):
            return _HPKE_CLASSIC.decrypt(enc, k, info=info)
    except (InvalidTag, ValueError, TypeError) as e:
        raise errors.DecryptError(f"wrapped key does not open with {key.algorithm.name} key") from e
    raise errors.DecryptError(f"{key.algorithm.name} is not a key-encapsulation algorithm")


# --- content AEAD ----------------------------------------------------------------


def aead_seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """ChaCha20-Poly1305 under a fresh random nonce: nonce(12) || ciphertext || tag."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """The inverse of ``aead_seal``; raises DecryptError on any tampering or wrong key."""
    if len(blob) < _NONCE_BYTES + _TAG_BYTES:
        raise errors.DecryptError("ciphertext is too short")
    try:
        return ChaCha20Poly1305(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
    except (InvalidTag, ValueError, TypeError) as e:
        raise errors.DecryptError("content does not decrypt") from e


def aead_seal_at(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """ChaCha20-Poly1305 under a caller-chosen nonce: ciphertext || tag.

    Only for keys used once per object with a nonce unique within it (attachment
    chunks: a fresh random key per attachment, nonce = chunk index).
    """
    if len(nonce) != _NONCE_BYTES:
        raise ValueError("nonce must be 12 bytes")
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def aead_open_at(key: bytes, nonce: bytes, blob: bytes, aad: bytes) -> bytes:
    """The inverse of ``aead_seal_at``; raises DecryptError on any tampering or wrong key."""
    if len(blob) < _TAG_BYTES or len(nonce) != _NONCE_BYTES:
        raise errors.DecryptError("ciphertext is too short")
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, blob, aad)
    except (InvalidTag, ValueError, TypeError) as e:
        raise errors.DecryptError("content does not decrypt") from e


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- private keys at rest ---------------------------------------------------------


def _scrypt_key(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=AEAD_KEY_BYTES, n=2**log2_n, r=r, p=p).derive(passphrase)


def passphrase_seal(data: bytes, passphrase: bytes) -> bytes:
    """Encrypt ``data`` under a key derived from ``passphrase`` (scrypt n=2**15, r=8, p=1)."""
    header = _PASS_HEADER.pack(_PASS_VERSION, _PASS_LOG2_N, _PASS_R, _PASS_P)
    salt = os.urandom(_PASS_SALT_BYTES)
    key = _scrypt_key(passphrase, salt, _PASS_LOG2_N, _PASS_R, _PASS_P)
    return header + salt + aead_seal(key, data, aad=header + salt)


def passphrase_open(blob: bytes, passphrase: bytes) -> bytes:
    """Open a ``passphrase_seal`` blob.

    Raises KeystoreError when the blob is not one (wrong version, truncated,
    absurd cost parameters) and WrongPassphraseError when authentication
    fails, which is also what a corrupted ciphertext looks like.
    """
    head = _PASS_HEADER.size + _PASS_SALT_BYTES
    if len(blob) < head + _NONCE_BYTES + _TAG_BYTES:
        raise errors.KeystoreError("sealed key blob is truncated")
    version, log2_n, r, p = _PASS_HEADER.unpack_from(blob)
    if version != _PASS_VERSION:
        raise errors.KeystoreError(f"sealed key blob has unknown version {version}")
    if not (10 <= log2_n <= _PASS_MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16):
        raise errors.KeystoreError("sealed key blob has unsupported scrypt parameters")
    # Each bound alone still admits n=2**20, r=32, p=16 (4 GiB, minutes): bound the product too.
    if (1 << log2_n) * r * p > _PASS_MAX_WORK:
        raise errors.KeystoreError("sealed key blob has unsupported scrypt parameters")
    key = _scrypt_key(passphrase, blob[_PASS_HEADER.size : head], log2_n, r, p)
    try:
        return aead_open(key, blob[head:], aad=blob[:head])
    except errors.DecryptError as e:
        raise errors.WrongPassphraseError("passphrase does not open the sealed key") from e


# --- TLS PKI keys (ECDSA P-256) --------------------------------------------------


def new_tls_key() -> TlsPrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def tls_key_pem(key: TlsPrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available scheme when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_tls_key_pem(pem: bytes, passphrase: bytes | None) -> TlsPrivateKey:
    """Load a PEM P-256 key; WrongPassphraseError or KeystoreError on failure."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase or None)
    except TypeError as e:  # encrypted without passphrase, or passphrase for a clear key
        raise errors.WrongPassphraseError("TLS key passphrase missing or not expected") from e
    except ValueError as e:
        if passphrase and b"ENCRYPTED" in pem:
            raise errors.WrongPassphraseError("passphrase does not open the TLS key") from e
        raise errors.KeystoreError("TLS key PEM is malformed") from e
    except UnsupportedAlgorithm as e:
        raise errors.KeystoreError("TLS key uses an unsupported algorithm") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise errors.KeystoreError("TLS key is not an elliptic-curve key")
    return key


def tls_public_key(key: TlsPrivateKey) -> CertificatePublicKeyTypes:
    return key.public_key()


def cert_pem(cert: x509.Certificate) -> bytes:
    """A certificate as PEM (the encoding flag lives under hazmat)."""
    return cert.public_bytes(serialization.Encoding.PEM)
