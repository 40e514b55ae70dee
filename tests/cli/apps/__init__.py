"""Small `--app` modules for the CLI tests."""
