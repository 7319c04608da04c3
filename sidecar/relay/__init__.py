"""Relay: pumps one upstream stream to one client, feeding accounting on the way."""
