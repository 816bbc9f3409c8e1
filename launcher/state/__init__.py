"""What the launcher keeps on this machine: its state folder, the job registry, the images it pushed."""
