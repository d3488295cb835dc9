"""Pipeline stages: each a pure function plus a thin entry point that reads and writes files."""
