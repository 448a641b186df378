"""Bundled example results records; see README.md in this folder for provenance and licences."""
