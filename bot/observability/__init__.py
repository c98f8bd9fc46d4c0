"""Operational visibility: /metrics (`metrics.py`) and `bot status` (`status.py`,
`status_cli.py`)."""
