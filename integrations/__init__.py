"""One folder per integration; `registry.py` lists them."""
