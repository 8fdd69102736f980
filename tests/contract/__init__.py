"""Contract tests: the Cal.com adapter against Cal.com's own published OpenAPI spec."""
