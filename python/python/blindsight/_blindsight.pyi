"""Types of blindsight's native module (re-exported by `blindsight`)."""

import os
from typing import Any, Callable, Literal, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[bool, Callable[[int, int], Any], None]

class Error(Exception):
    """Every blindsight failure; its message says what went wrong and what to do."""

class KeystoreError(Error):
    """Missing, existing, damaged keystore, or a wrong or missing passphrase."""

class InputError(Error):
    """Bad input: not an image, a numpy array of the wrong dtype or shape, a bad name."""

class KindMismatchError(InputError):
    """A query made another way than the collection's vectors (model or dimension)."""

class ServerError(Error):
    """The server refused or failed a request, or could not be reached."""

class Keystore:
    """The secret keys of your collections (never sent anywhere); the CLI's file format."""

    @staticmethod
    def create(
        path: PathLike,
        scheme: Literal["ckks", "bfv"] = "ckks",
        passphrase: Optional[str] = None,
        preset: Optional[str] = None,
    ) -> "Keystore": ...
    @staticmethod
    def open(path: PathLike, passphrase: Optional[str] = None) -> "Keystore": ...
    @property
    def path(self) -> str: ...
    @property
    def preset(self) -> str: ...
    @property
    def scheme(self) -> Literal["ckks", "bfv"]: ...

class IngestReport:
    """What an ingest did."""

    added: int
    duplicates: int
    failed: list[tuple[str, str]]
    left_out: list[tuple[str, str]]
    ids: list[tuple[str, int]]
    merged_segments: int
    seconds: float

class Hit:
    """One search result."""

    id: int
    name: str
    score: float
    channels: list[float]
    rank: int
    def thumbnail(self) -> Optional[bytes]:
        """Its JPEG thumbnail by private retrieval (the server does not learn which)."""
    def original(self) -> bytes:
        """Its original file, fetched by id: the server learns which image you opened."""

class Collection:
    """A collection of encrypted images, or of your own vectors."""

    @staticmethod
    def create(
        keystore: Keystore,
        name: str,
        kind: Literal["embedding", "pixels", "vectors"] = "embedding",
        db: Optional[PathLike] = None,
        server: Optional[str] = None,
        admin_token: Optional[str] = None,
        ca_file: Optional[PathLike] = None,
        fingerprint: Optional[str] = None,
        dim: Optional[int] = None,
        model: Optional[str] = None,
        insecure_http: bool = False,
    ) -> "Collection": ...
    @staticmethod
    def open(
        keystore: Keystore,
        name: str,
        db: Optional[PathLike] = None,
        server: Optional[str] = None,
        ca_file: Optional[PathLike] = None,
        fingerprint: Optional[str] = None,
        insecure_http: bool = False,
    ) -> "Collection": ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def preset(self) -> str: ...
    def info(self) -> dict[str, Any]: ...
    def ingest(
        self, paths: Sequence[PathLike], recursive: bool = True, progress: Progress = None
    ) -> IngestReport: ...
    def ingest_dir(
        self, path: PathLike, recursive: bool = True, progress: Progress = None
    ) -> IngestReport: ...
    def search(
        self,
        query: Union[PathLike, bytes],
        k: int = 10,
        rule: Optional[Literal["whole", "triple"]] = None,
    ) -> list[Hit]: ...
    def add(
        self,
        vectors: npt.NDArray[np.floating[Any]],
        names: Sequence[str],
        payloads: Optional[Sequence[Optional[bytes]]] = None,
        progress: Progress = None,
    ) -> IngestReport: ...
    def search_vector(
        self, vector: npt.NDArray[np.floating[Any]], k: int = 10, model: Optional[str] = None
    ) -> list[Hit]: ...
    def thumbnails(self, hits: Sequence[Hit]) -> list[Optional[bytes]]: ...
    def delete(self, ids: Sequence[int]) -> int: ...
    def compact(self) -> dict[str, Any]: ...

def embed_image(image: Union[PathLike, bytes]) -> npt.NDArray[np.float32]:
    """blindsight's own image features (1 280 float32 values, unit norm)."""

def write_sample_images(folder: PathLike, count: int = 100) -> list[str]:
    """Writes sample images (Twemoji PNGs) into folder; returns their paths."""
