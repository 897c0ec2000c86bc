"""The service layer: one core that every protocol adapter and the CLI call."""
