"""What a whole run did or would do: run summaries and the no-op rerun check. Imports every group below it."""
