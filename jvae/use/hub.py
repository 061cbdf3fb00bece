"""Models on the Hugging Face Hub: `hf:OWNER/NAME[@REVISION]` downloaded, and a shared folder uploaded.

Everything goes through the `huggingface_hub` client, so its cache (`HF_HOME`, `HF_HUB_CACHE`), its offline
mode (`HF_HUB_OFFLINE`), its endpoint (`HF_ENDPOINT`) and its login (`HF_TOKEN`, `hf auth login`) work as
they do for every other library. Only the files a jvae model needs are fetched, after the repository's
listing says they are within jvae's bounds.
"""

from __future__ import annotations

import re
from pathlib import Path

from jvae.base.errors import JvaeError, UsageError
from jvae.use.shared import CONFIG, CONFIG_MAX, WEIGHTS, WEIGHTS_MAX

PREFIX = "hf:"
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
FETCHED = {WEIGHTS: WEIGHTS_MAX, CONFIG: CONFIG_MAX}  # what loading a model needs, and each one's bound


class HubError(JvaeError):
    """The hub, the network or the repository said no."""


def is_hub_name(text: str) -> bool:
    return text.startswith(PREFIX)


def parse_name(text: str) -> tuple[str, str | None]:
    """(repo id, revision or None) of `hf:OWNER/NAME[@REVISION]`, refused unless both are plain names."""
    repo, at, revision = text.removeprefix(PREFIX).partition("@")
    if not REPO_ID.match(repo) or ".." in repo:
        raise UsageError(
            f"{text[:120]!r}: a hub model is hf:OWNER/NAME (letters, digits, . _ -) or hf:OWNER/NAME@REVISION"
        )
    if at and (not REVISION.match(revision) or ".." in revision):
        raise UsageError(f"{text[:120]!r}: the revision after @ is a branch, tag or commit name")
    return repo, revision or None


def download(text: str) -> Path:
    """The local folder (in the hub's cache) holding the model `text` names, fetched when not there."""
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, revision = parse_name(text)
    where = f"hf:{repo}" + (f"@{revision}" if revision else "")
    try:
        listing = None
        if not constants.HF_HUB_OFFLINE:
            try:
                listing = HfApi().model_info(repo, revision=revision, files_metadata=True)
            except HfHubHTTPError:
                raise
            except Exception:  # the hub cannot be reached (its client's own connection errors): try the cache
                listing = None
        if listing is not None:
            sizes = {entry.rfilename: entry.size for entry in listing.siblings or []}
            for name, most in FETCHED.items():
                if name not in sizes:
                    raise HubError(f"{where}: not a jvae model (the repository has no {name})")
                size = sizes[name]
                if size is not None and size > most:
                    raise HubError(f"{where}: its {name} is {size} bytes, more than a jvae model's {most}")
        folder = snapshot_download(
            repo, revision=revision, allow_patterns=list(FETCHED), local_files_only=listing is None
        )
    except RevisionNotFoundError:
        raise HubError(f"{where}: the repository has no revision {revision!r}") from None
    except GatedRepoError:
        raise HubError(
            f"{where}: a gated repository; accept its terms on the hub and log in (HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise HubError(
            f"{where}: no such model repository, or a private one: set HF_TOKEN or log in (hf auth login)"
        ) from None
    except LocalEntryNotFoundError:
        raise HubError(
            f"{where}: not in the hub cache, and the hub cannot be reached (offline, or HF_HUB_OFFLINE=1)"
        ) from None
    except HfHubHTTPError as exc:
        raise HubError(f"{where}: the hub refused ({_first_line(exc)})") from None
    except HubError:
        raise
    except Exception as exc:  # the client's connection and cache errors, whatever its HTTP library
        raise HubError(f"{where}: download failed ({type(exc).__name__}: {_first_line(exc)})") from None
    return Path(folder)


def upload(
    folder: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    message: str = "Upload jvae model",
) -> str:
    """Create the model repository if it is new and upload `folder` to it (on branch `revision`); the URL
    of the commit."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    parse_name(f"{PREFIX}{repo_id}" + (f"@{revision}" if revision else ""))
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=message
        )
    except HfHubHTTPError as exc:
        raise HubError(f"hf:{repo_id}: the hub refused the upload ({_first_line(exc)})") from None
    except Exception as exc:  # the client's connection errors, whatever its HTTP library
        raise HubError(f"hf:{repo_id}: upload failed ({type(exc).__name__}: {_first_line(exc)})") from None
    return str(getattr(commit, "commit_url", commit))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
