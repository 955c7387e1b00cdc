"""Backends: write the Graph IR out to other formats (a ``.tflite`` flatbuffer first)."""

from tinypatch.backends.tflite_writer import save_tflite, write_tflite

__all__ = ["save_tflite", "write_tflite"]
