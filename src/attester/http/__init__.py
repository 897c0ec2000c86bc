"""What every HTTP adapter shares, protocols (``attester.protocols``) and pages
(``attester.web``) alike, so that neither imports the other:

    body.py       request bodies read within their limit (raw, JSON, forms)
    state.py      the services an app holds (core, attestation) and waking the mailer
    negotiate.py  a browser that wants a page, or an API client that wants JSON
    render.py     the site's frame: templates, security headers, static assets
    site.py       the operator's branding, read once from the settings
"""
