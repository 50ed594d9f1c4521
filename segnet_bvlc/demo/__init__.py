"""The web demo (`python -m tools.demo`, docs/demo.md) and its measurement (`python -m tools.demo_measure`).

- `models`: the models offered (finished run folders found or named, converted weights);
- `images`: the gallery (CamVid's test split), uploads and the PNGs sent back;
- `state`: the `Demo` the server shares between threads: nets, results, per-image metrics;
- `server`: the FastAPI app over a `Demo`, and serving it; `static/` holds the page;
- `measure`: the page driven in headless Chromium, timed;
- `errors`: `DemoError`, a refused request with its HTTP status.
"""
