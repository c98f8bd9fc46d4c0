"""Every outbound effect on WeCom, as a row with an idempotency key, and its sender."""
