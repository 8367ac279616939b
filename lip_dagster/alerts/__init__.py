"""Knowing within the hour when a source stops delivering: source health, incidents
(opened once, resolved once), notifiers, the alert sensor and ``lip status``."""
