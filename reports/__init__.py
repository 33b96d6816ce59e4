"""The suite's PDF report: result tables and studies next to the paper's numbers (reports/build.py)."""
