"""Host-side staging: what is prepared on the user's machine before a job runs (code, images, data)."""
