"""Kernel loaders: put a guest kernel into RAM and say where and how it starts."""
