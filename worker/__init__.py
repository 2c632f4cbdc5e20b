"""The integration worker, in layers that point one way (import-linter keeps them so):

    worker.cli -> worker.platform -> worker.runtime -> worker.sdk -> worker.core

It knows no provider: integrations plug in through `worker.sdk.Integration` declarations
collected in a registry (`integrations/registry.py`). docs/architecture.md walks the layout."""
