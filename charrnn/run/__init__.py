"""The run folder: its layout and marker, checkpoint files, the one-writer lock and the run's status."""
