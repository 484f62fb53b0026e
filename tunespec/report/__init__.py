"""A job's reports: report.json (the document), report.md, junit.xml and loss.png."""

from tunespec.report.document import REPORT_SCHEMA_VERSION, build_report, now_rfc3339
from tunespec.report.files import FILES, write_reports
from tunespec.report.junit import combined_junit_path, invalid_suite, junit_suite, write_combined_junit
from tunespec.report.markdown import render_markdown

__all__ = [
    "FILES",
    "REPORT_SCHEMA_VERSION",
    "build_report",
    "combined_junit_path",
    "invalid_suite",
    "junit_suite",
    "now_rfc3339",
    "render_markdown",
    "write_combined_junit",
    "write_reports",
]
