"""Data set adapters: list a corpus's files with labels, with clear errors on odd layouts."""
