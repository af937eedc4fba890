"""Running as a systemd service: installing the unit and checking a device is ready."""
