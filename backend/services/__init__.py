"""Use cases: each owns its transaction (commits); helpers only flush."""
