"""Label Studio ML backend protocol and the platform API (FastAPI)."""
