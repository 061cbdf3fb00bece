"""`jvae explore`: a local web page that decodes a model's code live as the user moves its units.

`explorer` answers in model terms (units, codes, images) and needs only torch; `app` and `server` put it on
HTTP with Starlette and uvicorn (the `explore` extra); `static/` holds the page, served by jvae itself.

Layer 4, beside `jvae.training`. May import: layers 0-3.
"""
