"""The function's one structured logger (Powertools): JSON lines with the per-record keys appended.

Every module logs through ``logger``; while a record is processed its ``sequence_number``, ``frame_id``
and ``camera`` are appended, so each line says which record it is about. The level comes from
POWERTOOLS_LOG_LEVEL (default INFO); exceptions are logged with ``logger.exception`` (traceback included).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

SERVICE = "hybridcam-detector"

logger = Logger(service=SERVICE)
