"""Key generation, encrypted keystore, deployment PKI and directory signing."""
