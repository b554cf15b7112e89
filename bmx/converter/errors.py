"""The converter's one error type."""


class ConversionError(ValueError):
    """The network cannot be converted (unsupported layer or operator, k-bit layer, ...)."""
