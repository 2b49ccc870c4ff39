"""The corpus of real notebooks: its manifest, materialiser and data generators."""
