"""Frontends: import a model (TFLite flatbuffer, MCUNet JSON config, built-in zoo) into the IR."""
