"""Resumable streams shared between replicas: the store interface and its implementations."""
