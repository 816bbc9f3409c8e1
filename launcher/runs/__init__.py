"""Runs over time: a job handle, its progress, the budget, and the supervisor that retries and fails over."""
