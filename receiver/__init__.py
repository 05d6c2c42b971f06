"""nova-sink receiver: webhook verification, ingest, Nova client, reconciliation and CLI."""
