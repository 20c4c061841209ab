"""`segkit serve`: the models, options and outputs of the command line over HTTP, with a page.

    service.py   requests -> options (segkit.options) -> decode -> the model -> the reply
    batching.py  one thread per model; requests arriving together share a batch (bounded wait)
    replies.py   each response is a sink that writes into memory (overlay, cut-out, mask, COCO, YOLO)
    app.py       the FastAPI app: /v1/segment, /v1/models, /healthz, /metrics, the page at /
    metrics.py   Prometheus text
    server.py    the listening socket and uvicorn; Ctrl+C / SIGTERM let in-flight requests finish
    static/      the page (plain HTML, JS and CSS: no build step)
"""
