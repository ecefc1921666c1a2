"""Device models. Each device is a plain state machine with its regions and injected interfaces."""
