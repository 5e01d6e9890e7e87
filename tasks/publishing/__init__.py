"""Publish: score the tables (top-N per user, similar items, cold starts), shard the scoring, measure the
publication's reach and bias, stage it and make it live. Imports every group below it."""
