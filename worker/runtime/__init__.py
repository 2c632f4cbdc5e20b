"""The runtime: the flow of a message, in the order data takes it (ingress, publish through the
broker, consume, dispatch, execute, retry, one unit of work, outbox, results), the process's
shared pieces (runtime.py) and the background work (services, schedules). It knows no provider:
integrations come in as SDK declarations and reach it through the SDK's `Backend`."""
