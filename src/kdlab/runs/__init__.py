"""Run folders, the SQLite run index, reading summaries, and the experiment trackers that follow runs."""
