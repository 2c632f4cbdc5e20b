"""The runtime of the integration worker. It knows no provider: integrations plug in through
`worker.integration.Integration` declarations collected in a registry."""
