"""The error every invalid spec, batch or sweep option raises."""


class SpecError(ValueError):
    """An invalid spec or sweep option; the message names the field and the allowed values."""
