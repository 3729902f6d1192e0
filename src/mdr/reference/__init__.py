"""Published figures to compare with (package data, with their citation): ``published``."""
