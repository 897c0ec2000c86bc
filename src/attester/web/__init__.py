"""Server-rendered pages (Jinja2): verification and management links, search, upload."""
