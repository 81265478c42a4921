"""The web dashboard: pages served from our own static assets, JSON and server-sent events
over the Inspector (`conveyor dashboard`, or mounted in the API at /dashboard)."""
