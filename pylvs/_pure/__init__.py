"""Pure-Python twins of the native (C) functions: same names, same signatures."""
