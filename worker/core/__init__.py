"""The foundation every layer stands on: settings, logging, redaction, secrets at rest, signed
tokens, a small cache and stable ids. It imports nothing else of the worker."""
