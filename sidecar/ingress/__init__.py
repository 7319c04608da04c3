"""Ingress: where clients connect (WebSocket protocol v1 and the OpenAI HTTP routes)."""
