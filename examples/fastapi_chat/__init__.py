"""A small FastAPI chat backend that embeds tokenwire (see README.md here)."""
