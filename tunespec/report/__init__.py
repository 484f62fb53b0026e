"""A job's reports: report.json (the document), report.md, junit.xml, loss.png and report.html."""

from tunespec.report.document import REPORT_SCHEMA_VERSION, build_report, now_rfc3339
from tunespec.report.files import FILES, write_reports
from tunespec.report.html import combined_html_path, render_html, write_combined_html
from tunespec.report.junit import combined_junit_path, invalid_suite, junit_suite, write_combined_junit
from tunespec.report.markdown import render_markdown

__all__ = [
    "FILES",
    "REPORT_SCHEMA_VERSION",
    "build_report",
    "combined_html_path",
    "combined_junit_path",
    "invalid_suite",
    "junit_suite",
    "now_rfc3339",
    "render_html",
    "render_markdown",
    "write_combined_html",
    "write_combined_junit",
    "write_reports",
]
