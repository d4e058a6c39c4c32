"""Errors raised while mapping app input to FHIR resources."""


class MappingError(ValueError):
    """App input that cannot be mapped; ``field`` names the JSON field of the app API.

    Messages never echo the submitted value, so they are safe to return to the caller.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
