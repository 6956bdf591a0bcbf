"""Files users send: kept on this machine, their text read (OCR for images and scans), offered to the model.

``FileIntake`` takes uploads from every channel and the HTTP API and is the ``FileStore`` behind skills'
``context.files``; ``FilesSkill`` lets the model list files and read their text to summarise them or
answer questions about them.
"""

from .extract import ExtractionError, ExtractionLimits
from .intake import FileIntake
from .skill import FilesSkill

__all__ = ["ExtractionError", "ExtractionLimits", "FileIntake", "FilesSkill"]
