"""The audit log: RFC 9162 Merkle tree, records, signed tree heads, proofs, stores and verification.

Pure: ``merkle`` (hashing and proof verification only, the part the other
embassy audits), ``tree`` (proof generation), ``record``, ``treehead``,
``query`` (value types), ``verify`` (the whole verification workflow),
``bundle`` (offline export bundles), ``codec``, ``errors``, ``schema``.
Stores: ``store`` (the protocol and the SQL both engines share), ``sqlite``,
``postgres``. May import ``exchange.core`` and ``exchange.runtime``.
"""

__all__ = [
    "bundle",
    "codec",
    "errors",
    "merkle",
    "postgres",
    "query",
    "record",
    "schema",
    "sqlite",
    "store",
    "tree",
    "treehead",
    "verify",
]
