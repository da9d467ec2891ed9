"""Showing frames the right way up, as a player honouring the display matrix would."""

from fractions import Fraction

import av
from av.video.frame import VideoFrame

# The filters that turn a frame by 1, 2 or 3 quarter turns clockwise.
TURN_FILTERS: dict[int, tuple[tuple[str, str], ...]] = {
    1: (("transpose", "clock"),),
    2: (("hflip", ""), ("vflip", "")),
    3: (("transpose", "cclock"),),
}


def quarter_turns(frame: VideoFrame) -> int:
    """How many quarter turns clockwise (0 to 3) show the frame upright.

    Phones store portrait video as landscape frames plus a display matrix; PyAV reports its
    angle counterclockwise. Angles that are not a multiple of 90 degrees are rounded.
    """
    return round(-frame.rotation / 90) % 4


def display_size(frame: VideoFrame, sample_aspect: Fraction | None) -> tuple[int, int]:
    """The size a player shows `frame` at: non-square pixels stretched, rotation applied."""
    width, height = frame.width, frame.height
    if sample_aspect and sample_aspect > 0:
        width = round(width * sample_aspect)
    if quarter_turns(frame) % 2:
        width, height = height, width
    return width, height


class Upright:
    """Turns decoded frames upright; frames that need no turn pass through untouched.

    Encoders drop the display matrix, so the pixels themselves must be turned. The filter
    graph is rebuilt only if the turn or the frame geometry changes mid-stream.
    """

    def __init__(self) -> None:
        self._key: tuple[int, int, int, str] | None = None
        self._graph: av.filter.Graph | None = None

    def __call__(self, frame: VideoFrame) -> VideoFrame:
        turns = quarter_turns(frame)
        if turns == 0:
            return frame
        key = (turns, frame.width, frame.height, frame.format.name)
        if key != self._key or self._graph is None:
            self._graph = self._build(frame, turns)
            self._key = key
        self._graph.push(frame)
        turned = self._graph.pull()
        assert isinstance(turned, VideoFrame), "a video graph yields video frames"
        return turned

    @staticmethod
    def _build(frame: VideoFrame, turns: int) -> av.filter.Graph:
        graph = av.filter.Graph()
        nodes = [
            graph.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format,
                time_base=frame.time_base,
            )
        ]
        nodes += [graph.add(name, args or None) for name, args in TURN_FILTERS[turns]]
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes)
        graph.configure()
        return graph
