"""Typed errors: each message names the file, what was expected, what was found and what to do."""


class LtDeployError(Exception):
    """Base of every error the CLI turns into a one-line message and a non-zero exit."""


class ImageError(LtDeployError):
    """An input image is missing, unreadable or of an unsupported kind."""


class EngineError(LtDeployError):
    """An engine file is missing, corrupt, of an unknown kind, or built for another runtime."""


class MetadataError(EngineError):
    """A model description is missing, of an unknown version, or malformed."""


class InputShapeError(LtDeployError):
    """An input tensor does not match what the engine accepts."""


class OutputError(LtDeployError):
    """A result could not be written (folder not writable, disk full)."""


class DatasetError(LtDeployError):
    """A dataset is missing, laid out unexpectedly, or its annotations are inconsistent."""


class ModelError(LtDeployError):
    """A model architecture, its weights file or its class list is unknown, unreachable or does not fit."""
