"""Fun-ASR models through funasr: locate the folder, build, check the checkpoint, run, parse."""

from .engine import FunASREngine

__all__ = ["FunASREngine"]
