"""The `liaison` command line."""
