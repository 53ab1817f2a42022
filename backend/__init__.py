"""Services, persistence and the HTTP API of nerloop."""
