"""OTA on the host: make and inspect signed update packages (docs/ota.md)."""
