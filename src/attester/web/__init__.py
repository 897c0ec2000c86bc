"""Server-rendered pages (Jinja2, no build step, no external assets): search, upload,
the pages mail links open, About/API, and error pages. ``pages`` lists the modules."""
