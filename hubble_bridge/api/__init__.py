"""Generated Hubble API stubs (scripts/gen_protos.py); nothing here is hand-written."""
