"""Campaign reports: PNG plots and one self-contained HTML page."""
