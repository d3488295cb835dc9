"""Scaffold: a new model repository from a data set (column inference, rendering)."""
