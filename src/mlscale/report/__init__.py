"""The report: every benchmark and demo result of a directory as one static HTML page."""

from .html import render_report, write_report

__all__ = ["render_report", "write_report"]
