"""The callback gateway: verify, decrypt, parse, store, acknowledge."""
