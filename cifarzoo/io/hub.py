"""The Hugging Face Hub: fetch a model's files into the HF cache, pinned and hash-checked, and upload a folder.

Torch-free. ``huggingface_hub`` is imported inside the functions, so ``cifarzoo list`` never pays for it.

Downloads go through ``hf_hub_download``, so the cache is Hugging Face's own (``HF_HOME``, ``HF_HUB_CACHE``),
files land atomically (a ``.incomplete`` blob is never taken for a finished one), ``HF_HUB_OFFLINE=1`` reads
the cache only, and a pinned commit that is already cached needs no network at all. Only the files the
chosen backend reads are fetched. The Hub is asked once, with a short timeout and no retries, whether it
answers at all; if it does not (offline, a captive portal), the cache is used alone and a missing file is a
one-line error within seconds, instead of huggingface_hub's retries (about 25 s per file). Zoo entries pin a
commit and every file's sha256; ``hf://USER/REPO[@rev]`` ids have no pins, so they may only serve formats that
cannot run code when read (safetensors, ONNX).

The upload side never handles the token: ``HfApi`` finds ``HF_TOKEN`` or the saved login by itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from cifarzoo._version import __version__
from cifarzoo.config import ModelConfig
from cifarzoo.errors import CheckpointError, CifarzooError, ConfigError, UnknownModelError
from cifarzoo.io.integrity import verify_sha256
from cifarzoo.io.layout import CONFIG_NAME, ONNX_NAME, TORCHSCRIPT_NAME, WEIGHTS_NAME
from cifarzoo.registry import ZooEntry

HUB_PREFIX = "hf://"
DEFAULT_REVISION = "main"

# What each backend reads from a model folder; only these files are downloaded.
BACKEND_FILES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "torch": (CONFIG_NAME, WEIGHTS_NAME),
    "onnx": (CONFIG_NAME, ONNX_NAME),
    "torchscript": (CONFIG_NAME, TORCHSCRIPT_NAME),
})
# ``auto`` takes the first of these the repo (or, offline, the cache) has in full.
AUTO_ORDER: tuple[str, ...] = ("onnx", "torch")
# TorchScript archives carry code that runs when loaded, so they are only taken from sha256-pinned repos.
CODE_FREE_BACKENDS = frozenset({"torch", "onnx"})

# Seconds the first request waits for the Hub before it is taken for unreachable; HF_HUB_ETAG_TIMEOUT, when set,
# overrides it (huggingface_hub's own knob for the same request).
HUB_TIMEOUT_S = 5.0

# Hub tokens look like hf_xxx; any that an upstream error message might echo is masked before we print it.
_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")
# A full commit sha: a revision whose cached files never change, so the cache answers without the Hub.
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubModel:
    """A model repo on the Hub at one revision, with the sha256 each file must have.

    Attributes:
        repo_id: ``USER/NAME``.
        revision: a commit sha (pinned), branch or tag; ``None`` means ``main``.
        sha256: expected sha256 per file name. Empty for ``hf://`` ids; a zoo entry pins every file it serves.
        label: what the user asked for (a zoo name or an ``hf://`` id), for messages.
    """

    repo_id: str
    revision: str | None = None
    sha256: Mapping[str, str] = field(default_factory=dict)
    label: str = ""

    @property
    def pinned(self) -> bool:
        return bool(self.sha256)

    @property
    def uri(self) -> str:
        return f"{HUB_PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")

    @classmethod
    def from_entry(cls, entry: ZooEntry) -> HubModel:
        """The Hub source of a zoo entry whose weights are ``kind="hub"``."""
        if entry.weights.kind != "hub" or not entry.weights.location:
            raise CifarzooError(f"{entry.name}: its weights are not on the Hub (kind {entry.weights.kind!r})")
        return cls(entry.weights.location, entry.weights.revision, dict(entry.weights.sha256), entry.name)

    @classmethod
    def parse(cls, text: str) -> HubModel:
        """``hf://USER/REPO`` or ``hf://USER/REPO@REVISION`` (a commit sha, branch or tag)."""
        body = text[len(HUB_PREFIX):] if text.startswith(HUB_PREFIX) else text
        repo_id, sep, revision = body.partition("@")  # repo ids cannot contain "@"
        if sep and not revision:
            raise UnknownModelError(f"{text}: empty revision after '@'; use hf://USER/REPO@REVISION")
        return cls(check_repo_id(repo_id, text), revision or None, {}, text)


def is_hub_id(text: str) -> bool:
    """True for ``hf://...`` model ids."""
    return text.startswith(HUB_PREFIX)


def check_repo_id(repo_id: str, label: str | None = None) -> str:
    """``repo_id`` if it is a valid ``USER/NAME`` Hub model id; a one-line error otherwise."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    where = label or repo_id
    if repo_id.count("/") != 1:
        raise UnknownModelError(f"{where}: a Hub repo id is USER/NAME, got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UnknownModelError(f"{where}: invalid Hub repo id ({_first_line(exc)})") from None
    return repo_id


def download(model: HubModel, backend: str = "torch") -> Path:
    """The snapshot folder holding the files ``backend`` reads, fetched into (or found in) the HF cache.

    ``backend`` is ``torch`` (``model.safetensors``), ``onnx`` (``model.onnx``), ``torchscript`` (pinned repos
    only) or ``auto`` (ONNX when the repo has it, else torch); ``config.json`` always comes too. Pinned files
    are checked against their sha256 and the config is validated before the folder is returned. When the Hub
    does not answer, only the cache is used, and a file that is not there is a one-line error naming it.
    """
    return _download(model, backend, _Connection())


@dataclass
class _Connection:
    """Whether the Hub answers, found out at most once per download, so an unreachable Hub costs one timeout.

    ``reason`` says why the Hub is not used (unreachable, not answering as a Hub); ``None`` while it answered or
    was not needed.
    """

    checked: bool = False
    reason: str | None = None

    def check(self, model: HubModel, name: str) -> None:
        if not self.checked:
            self.checked = True
            self.reason = _probe(model, name)


def _download(model: HubModel, backend: str, connection: _Connection) -> Path:
    if backend == "auto":
        for candidate in AUTO_ORDER[:-1]:
            if model.pinned and not set(BACKEND_FILES[candidate]) <= set(model.sha256):
                continue  # a pinned release serves only the files it pins
            try:
                return _download(model, candidate, connection)
            except _MissingFiles:
                continue  # this format is not in the repo (or not cached offline): try the next one
        backend = AUTO_ORDER[-1]
    if backend not in BACKEND_FILES:
        raise CifarzooError(f"unknown backend {backend!r}; choose one of auto, {', '.join(BACKEND_FILES)}")
    if backend not in CODE_FREE_BACKENDS and not model.pinned:
        raise CheckpointError(
            f"{model.label}: {backend} files run code when loaded, so they are only taken from repos whose files "
            f"are sha256-pinned in the zoo registry; use backend torch or onnx for {model.uri}"
        )
    names = BACKEND_FILES[backend]
    paths = _fetch(model, names, connection)
    for name, path in paths.items():
        _check_pin(model, name, path)
    folder = paths[CONFIG_NAME].parent
    try:
        ModelConfig.load(folder / CONFIG_NAME)
    except ConfigError as exc:
        raise CheckpointError(f"{model.label}: {exc}") from None
    return folder


def download_entry(entry: ZooEntry, backend: str = "torch") -> Path:
    """:func:`download` for a zoo entry, also checking that the repo's config is that entry's model."""
    folder = download(HubModel.from_entry(entry), backend)
    config = ModelConfig.load(folder / CONFIG_NAME)
    expected = entry.model_config()
    if (config.arch, config.classes) != (expected.arch, expected.classes):
        raise CheckpointError(
            f"{entry.name}: {folder / CONFIG_NAME} describes {config.arch} with {config.num_classes} classes, "
            f"not the zoo entry's {expected.arch} with {expected.num_classes}"
        )
    return folder


class _MissingFiles(CifarzooError):
    """Some files are neither in the repo nor (offline) in the cache; ``auto`` falls back on this."""


def _timeout() -> float:
    from huggingface_hub import constants

    # HF_HUB_ETAG_TIMEOUT set by the user wins, as it does inside hf_hub_download.
    user_set = constants.HF_HUB_ETAG_TIMEOUT != constants.DEFAULT_ETAG_TIMEOUT
    return float(constants.HF_HUB_ETAG_TIMEOUT) if user_set else HUB_TIMEOUT_S


def _fetch(model: HubModel, names: tuple[str, ...], connection: _Connection) -> dict[str, Path]:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    paths: dict[str, Path] = {}
    not_cached: list[str] = []
    not_in_repo: list[str] = []
    for name in names:
        cached = _cached(model, name) if _COMMIT.fullmatch(model.revision or "") else None
        if cached is not None:  # a pinned commit in the cache never changes: no need to ask the Hub
            paths[name] = cached
            continue
        if not constants.HF_HUB_OFFLINE:
            connection.check(model, name)
        try:
            found = hf_hub_download(
                model.repo_id, name, revision=model.revision,
                # A Hub that did not answer (to the check, or to an earlier file) is not asked again: each try
                # would retry for ~25 s before giving up.
                local_files_only=connection.reason is not None or bool(not_cached),
                etag_timeout=_timeout(),
                library_name="cifarzoo", library_version=__version__,
            )
            paths[name] = Path(found)
        except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass in every version
            not_cached.append(name)
        except EntryNotFoundError:
            not_in_repo.append(name)
        except Exception as exc:  # translate the Hub's own errors; anything else is a bug and propagates
            raise _hub_error(model, exc) from None
    revision = model.revision or DEFAULT_REVISION
    if not_in_repo:
        raise _MissingFiles(
            f"{model.label}: {model.repo_id}@{revision} has no {', '.join(not_in_repo)}; "
            f"a cifarzoo model repo is made with `cifarzoo publish`"
        )
    if not_cached:
        offline = bool(constants.HF_HUB_OFFLINE)
        unreachable = connection.reason or "the Hub cannot be reached"
        reason = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else unreachable
        pin = f" --revision {model.revision}" if model.revision else ""
        skip = "" if offline else "; HF_HUB_OFFLINE=1 uses the cache alone, without waiting for the network"
        raise _MissingFiles(
            f"{model.label}: {', '.join(not_cached)} not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
            f"{reason}; run once online, fetch them with `hf download {model.repo_id} {' '.join(not_cached)}{pin}`, "
            f"or use a local model folder (--model ./DIR){skip}"
        )
    folders = {path.parent for path in paths.values()}
    if len(folders) != 1:  # a branch moved between two downloads
        raise CheckpointError(
            f"{model.label}: files came from different commits of {model.repo_id}; pin one with @REVISION"
        )
    return paths


def _cached(model: HubModel, name: str) -> Path | None:
    """The cached file of a commit, found without any network request; ``None`` when it is not cached."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model.repo_id, name, revision=model.revision)
    return Path(found) if isinstance(found, str) else None


def _probe(model: HubModel, name: str) -> str | None:
    """``None`` when the Hub answers as the Hub; otherwise why it is not used, for the error message.

    One HEAD request for ``name``, bounded by the timeout and without the retries that hf_hub_download makes on a
    network error or an HTTP 5xx. Answers that only the Hub gives (no such repo, revision or file, gated) count as
    answering: hf_hub_download then raises them properly.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    url = hf_hub_url(model.repo_id, name, revision=model.revision)
    try:
        metadata = get_hf_file_metadata(
            url, timeout=_timeout(), library_name="cifarzoo", library_version=__version__
        )
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError, EntryNotFoundError):
        return None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return None  # authentication: hf_hub_download reports it with the Hub's own message
        return f"the Hub at {constants.ENDPOINT} answered HTTP {status or '?'}"
    except Exception as exc:
        if not _is_network_or_hub_error(exc):
            raise
        return f"the Hub at {constants.ENDPOINT} cannot be reached ({type(exc).__name__}: {_first_line(exc)})"
    if metadata.commit_hash is None:  # a captive portal, a proxy's login page, a wrong HF_ENDPOINT
        return f"{constants.ENDPOINT} answered, but not as the Hugging Face Hub (a captive portal or proxy page?)"
    return None


def _check_pin(model: HubModel, name: str, path: Path) -> None:
    if not model.pinned:
        return
    if name not in model.sha256:
        raise CheckpointError(f"{model.label}: the registry pins no sha256 for {name}; refusing an unchecked file")
    try:
        verify_sha256(path, model.sha256[name])
    except CheckpointError as exc:
        raise CheckpointError(
            f"{model.label}: {name}: {exc}; the cached file is corrupt or the repo changed: "
            "delete it and download again"
        ) from None


def _hub_error(model: HubModel, exc: Exception) -> Exception:
    """A one-line :class:`CifarzooError` for the Hub's known failures; ``exc`` itself for anything else."""
    from huggingface_hub.utils import (
        FileMetadataError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    login = "log in with `hf auth login` or set HF_TOKEN"
    # First match wins: the subclasses come before HfHubHTTPError.
    messages: tuple[tuple[type[BaseException], str], ...] = (
        (GatedRepoError, f"{model.repo_id} is gated: accept its terms on the Hub, then {login}"),
        (RepositoryNotFoundError, f"no model repo {model.repo_id} on the Hub (if it is private, {login})"),
        (RevisionNotFoundError, f"{model.repo_id} has no revision {model.revision}"),
        (HFValidationError, f"invalid repo id or revision ({_first_line(exc)})"),
        (HfHubHTTPError, f"the Hub refused the download ({_first_line(exc)})"),
        (FileMetadataError, f"the server did not answer as the Hugging Face Hub ({_first_line(exc)})"),
    )
    for kind, message in messages:
        if isinstance(exc, kind):
            return CifarzooError(f"{model.label}: {message}")
    return exc


# ----------------------------------------------------------------------------------------------------------
# Upload


@dataclass(frozen=True)
class Upload:
    """Where an upload went: the repo, its commit and that commit's sha (the revision to pin)."""

    repo_url: str
    commit_url: str
    revision: str


def upload_folder(folder: str | Path, repo_id: str, private: bool = False, commit_message: str | None = None) -> Upload:
    """Create ``repo_id`` if needed and make the repo hold exactly ``folder``'s files, in one commit.

    Remote files that are not in ``folder`` are deleted in the same commit, so a re-release never leaves a
    stale file behind. ``private`` applies when the repo is created. The token comes from ``HF_TOKEN`` or
    ``hf auth login``; cifarzoo never reads, prints or stores it.
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    folder = Path(folder)
    if not folder.is_dir():
        raise CifarzooError(f"{folder}: not a folder")
    api = HfApi(library_name="cifarzoo", library_version=__version__)
    message = commit_message or f"cifarzoo {__version__}: publish {repo_id}"
    try:
        repo = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message=message, delete_patterns="*",
        )
    except ValueError as exc:  # json's JSONDecodeError: an HTML page (captive portal, proxy) instead of the Hub's JSON
        if not isinstance(exc, json.JSONDecodeError):
            raise
        raise CifarzooError(
            f"{repo_id}: upload failed: the Hub at {_endpoint()} answered with something that is not JSON (a captive "
            "portal or proxy page?); check the network or HF_ENDPOINT"
        ) from None
    except Exception as exc:
        if not _is_network_or_hub_error(exc):
            raise
        raise CifarzooError(f"{repo_id}: upload failed ({type(exc).__name__}: {_first_line(exc)})") from None
    return Upload(str(repo), commit.commit_url, commit.oid)


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _is_network_or_hub_error(exc: Exception) -> bool:
    # huggingface_hub's HTTP stack changed (requests, then httpx), so match by origin instead of by class.
    origin = type(exc).__module__.split(".")[0]
    return isinstance(exc, OSError) or origin in {
        "huggingface_hub", "requests", "urllib3", "httpx", "httpx2", "httpcore"
    }


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return _TOKEN_PATTERN.sub("hf_***", lines[0] if lines else type(exc).__name__)
