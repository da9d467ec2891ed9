"""The video layer's errors: one base class, and one subclass per thing a user can act on."""


class VideoError(Exception):
    """A video could not be ingested, probed or exported; str(e) is one line for the user."""


class NotAVideo(VideoError):
    """The file is not a video we accept: text, an image, audio only, or an unsupported format."""


class CorruptVideo(VideoError):
    """The file looks like a video but is truncated or damaged."""
