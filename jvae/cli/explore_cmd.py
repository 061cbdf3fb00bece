"""`jvae explore`: a local web page with a slider per unit, decoding as the sliders move."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from jvae.cli.common import DEVICE_HELP, class_option, load, set_class
from jvae.cli.console import err, fail, out, user_errors


def explore(
    ckpt: Path = typer.Argument(
        ..., help="A checkpoint (ckpt.pt), a run or exported folder, official:NAME or hf:OWNER/NAME."
    ),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on (0: any free one)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; anything but loopback exposes the model."
    ),
    images: list[Path] = typer.Option(
        [], "--image", help="An image the page can start from (its code sets the sliders); repeatable."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the address; do not open a browser."),
    label: int | None = class_option(),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Explore a model in the browser.

    A local web page with a control per unit, ranked by KL, and the image they decode to, live.
    """
    try:
        from jvae.explore.server import is_loopback, listen, server, url_of
    except ImportError as exc:
        raise fail(
            f"jvae explore needs its web server ({exc.name or exc}): pip install 'jvae[explore]'", 1
        ) from None
    from jvae.base.images import load_image
    from jvae.explore.explorer import Explorer

    with user_errors():
        loaded, torch_device = load(ckpt, device)
        set_class(loaded.model, label, needed=False)
        data = loaded.preset.data
        for image in images:  # an unreadable --image is refused now, not when the page asks for it
            load_image(image, data.channels, data.image_size)
        explorer = Explorer(loaded, torch_device, images, label)
        sock = listen(host, port)
    url = url_of(sock)
    if not is_loopback(sock):
        err.print(
            f"warning: listening on {host}:{sock.getsockname()[1]}: anyone who can reach this port can use "
            f"the model{' and see the --image files' if images else ''}",
            markup=False,
        )
    out.print(f"jvae explore: {url} (Ctrl-C stops)", markup=False)
    sys.stdout.flush()
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    server(explorer, sock).run(sockets=[sock])
