"""Scoring new images with the champion model: `fashionnet score` and the inbox flow."""
