"""`cuda.bindings.utils.get_cuda_native_handle` for the host-memory stand-in."""


def get_cuda_native_handle(obj) -> int:
    """The address behind a stream or event object."""
    return obj._address
