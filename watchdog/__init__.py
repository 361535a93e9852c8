"""The watchdog: the command line now, the daemon that wires topology,
probes and alerts together later. Nothing imports this package."""
