"""The report stage: metrics, the run report and its renderers (CSV, figures, Markdown, HTML,
terminal), history and publishing."""
