"""Artifacts in an S3 bucket (AWS, or any S3-compatible server) through boto3.

`s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1`; credentials come from the
usual AWS sources (environment, profile, instance role), never from the URL.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from ..errors import NotFound
from . import ArtifactInfo, ArtifactStore


def s3_client(
    endpoint: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
):
    """A boto3 S3 client; path-style addressing so local S3-compatible servers work too."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=region or "us-east-1",
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


class S3Artifacts(ArtifactStore):
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.url = url.split("?", 1)[0]
        self.client = s3_client(query.get("endpoint", [None])[0], query.get("region", [None])[0])

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _put(self, key: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self._key(key))

    def _get(self, key: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(dest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise NotFound(f"no artifact {key!r}") from None
            raise

    def _list(self, prefix: str) -> list[ArtifactInfo]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        return [
            ArtifactInfo(obj["Key"][strip:], obj["Size"])
            for page in pages
            for obj in page.get("Contents", [])
        ]

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
