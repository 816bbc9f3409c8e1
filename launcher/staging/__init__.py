"""What leaves this machine before a job starts: the code archive, a local data folder, packed datasets, the
training image."""
