"""Thumbnails: ``GET /images/{id}`` resizes the vendor images stored offers list, with a bounded disk cache."""
