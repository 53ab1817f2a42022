"""The sweep moved to ``backend.services.sweep`` (the backend runs it periodically, workers when they start).

This name stays for the callers of the event re-send alone.
"""

from __future__ import annotations

from backend.services.sweep import resend_unqueued_events as sweep_unqueued

__all__ = ["sweep_unqueued"]
