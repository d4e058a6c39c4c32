"""The clinicians' dashboard: server-rendered pages (Jinja2), no external assets."""
