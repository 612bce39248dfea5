"""The one exception type for problems a user can fix."""


class PipelineError(Exception):
    """Bad input, bad params, a missing file: printed as one line, never as a traceback."""
