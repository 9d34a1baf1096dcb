"""pytest configuration: importing this file puts tests/ on sys.path, so every test module,
tests/learning/ included, can ``import helpers``."""
