"""Where decisions go: LEDs, JSON lines (journal, rotating file), a terminal, systemd's notify
socket; and reading the decision log back (``inspect``)."""
