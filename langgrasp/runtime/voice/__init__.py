"""Spoken commands on the robot PC: an offline transcriber feeding the pick loop.

* ``Transcriber`` (interface), ``Transcript``, ``TranscriberConfig``, ``create_transcriber`` and
  ``register_transcriber`` (the registry of named backends): ``transcriber``.
* ``PocketsphinxTranscriber`` (``pip install 'langgrasp[voice]'``; its wheel ships the English
  model): ``pocketsphinx_backend``, imported when first created.
* ``Vocabulary``, ``default_vocabulary`` and ``build_grammar``: the command grammar recognition
  is constrained to (``grammar``).
* ``read_wav``, ``prepare``, ``UtteranceSegmenter``, ``synthesize`` (espeak-ng test speech):
  ``audio``; ``Microphone`` (sounddevice, imported when opened): ``microphone``.
* ``Listener`` (push-to-talk and wake-word modes) and ``CommandThread`` (commands off the
  listening thread, stop at once): ``listener``; ``run_files``,
  ``run_push_to_talk``, ``run_wake_word``: ``sessions``; ``langgrasp listen``: ``commands``.

Spoken lines reach ``PickLoop.command`` like typed ones, so ``langgrasp.runtime.intents``
normalises both. Nothing here imports pocketsphinx or sounddevice at import time.
"""

from langgrasp.runtime.voice.audio import (
    Audio,
    SegmenterConfig,
    UtteranceSegmenter,
    load_utterance,
    prepare,
    read_wav,
    resample,
    synthesize,
    to_mono,
    write_wav,
)
from langgrasp.runtime.voice.grammar import (
    Grammar,
    Vocabulary,
    build_grammar,
    default_vocabulary,
    load_vocabulary,
)
from langgrasp.runtime.voice.listener import (
    CommandThread,
    Heard,
    Listener,
    ListenerConfig,
    ListenMode,
)
from langgrasp.runtime.voice.microphone import Microphone, MicrophoneUnavailableError
from langgrasp.runtime.voice.sessions import run_files, run_push_to_talk, run_wake_word
from langgrasp.runtime.voice.transcriber import (
    AudioError,
    Spotted,
    Transcriber,
    TranscriberConfig,
    TranscriberUnavailableError,
    Transcript,
    VoiceError,
    WordTiming,
    available_transcribers,
    check_audio,
    create_transcriber,
    register_transcriber,
)

__all__ = [
    "Audio",
    "AudioError",
    "CommandThread",
    "Grammar",
    "Heard",
    "ListenMode",
    "Listener",
    "ListenerConfig",
    "Microphone",
    "MicrophoneUnavailableError",
    "SegmenterConfig",
    "Spotted",
    "Transcriber",
    "TranscriberConfig",
    "TranscriberUnavailableError",
    "Transcript",
    "UtteranceSegmenter",
    "Vocabulary",
    "VoiceError",
    "WordTiming",
    "available_transcribers",
    "build_grammar",
    "check_audio",
    "create_transcriber",
    "default_vocabulary",
    "load_utterance",
    "load_vocabulary",
    "prepare",
    "read_wav",
    "register_transcriber",
    "resample",
    "run_files",
    "run_push_to_talk",
    "run_wake_word",
    "synthesize",
    "to_mono",
    "write_wav",
]
