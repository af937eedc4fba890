"""Where audio and frames come from: the microphone, the camera, and recordings replayed.

Every source hands the pipeline mono float32 audio blocks or 2-D uint8 grey frames
(:class:`edge.interfaces.AudioSource`, :class:`edge.interfaces.FrameReader`).
"""
