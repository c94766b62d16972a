"""One module per patched library; each knows only its library and resil's core."""
