"""The model zoo: every architecture built from data (stage tables, frozen configs) and one registry."""
