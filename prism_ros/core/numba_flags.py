"""Compilation flags shared by the Numba kernels."""

#: fast-math without "no NaN / no Inf" (NaN checks stay valid)
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
