"""Adapters: the ports' implementations (Label Studio, LLM, job queue) and the loaded models."""
