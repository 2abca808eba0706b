"""Tables, Markdown/HTML pages, plots and ``kdlab compare``'s files."""
