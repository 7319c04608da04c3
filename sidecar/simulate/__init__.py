"""A simulated OpenAI-compatible model server, for tests, the demo and benchmarks."""
