"""One module per `llmfleet` subcommand; each exposes `register(app)`."""
