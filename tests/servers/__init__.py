"""Real inference servers on loopback for the tests (started and stopped by fixtures)."""
