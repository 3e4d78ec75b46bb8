#!/usr/bin/env python3
"""A client written the way the lab's existing build scripts call the
artifact storage (the original API): `requests` with a JSON body even on GET,
the download streamed in 1 MiB chunks to `<dir>/<tag>.tar.gz` and opened with
`tarfile` in 'r:gz' mode, and publishing by a path on the shared mount.

Used by tests/compat.rs; it must keep working unchanged against the server.

    client.py download BASE COMPONENT TAG ARCH DIR
        exit 0 once <DIR>/<TAG>.tar.gz is downloaded and extracted into DIR;
        on a non-200 answer, print the server's JSON error and exit 1.
    client.py publish BASE COMPONENT TAG PATH
        PUT /component with results_tarball=PATH and no API key; print the
        status code (then the body on a second line); exit 0 iff 2xx.
    client.py check-json-accept BASE COMPONENT TAG
        the download as in the scripts' documented curl, with
        'accept: application/json': it must still be a gzip tarball, not JSON.
    client.py image BASE DOCKERFILE_NAME ARCH
        POST /image with {"dockerfile": name, "arch": os_env}, as the scripts
        do; log response.json(); exit 0 iff the answer says success.

The identity headers come from $LINUX_USERNAME / $GITHUB_USERNAME (defaults:
the login name and "compat-test").
"""

import getpass
import json
import os
import sys
import tarfile
import tempfile

import requests


def identity_headers():
    return {
        "linux_username": os.environ.get("LINUX_USERNAME") or getpass.getuser(),
        "github_username": os.environ.get("GITHUB_USERNAME") or "compat-test",
    }


def base_url(base):
    # The scripts build URLs as `base + 'component'`.
    return base if base.endswith("/") else base + "/"


def print_error(response):
    """Prints the server's JSON error (or the raw body if it is not JSON)."""
    try:
        body = response.json()
        print("status %d: %s" % (response.status_code, json.dumps(body)))
        if isinstance(body, dict) and "errorMessage" in body:
            print("errorMessage: %s" % body["errorMessage"])
    except ValueError:
        print("status %d: %s" % (response.status_code, response.text))


def download(base, component, tag, os_env, out_dir, extra_headers=None):
    """Returns the path of the downloaded tarball (extracted into out_dir), or None."""
    headers = identity_headers()
    if extra_headers:
        headers.update(extra_headers)
    response = requests.get(
        base_url(base) + "component",
        json={"component": component, "tag": tag, "arch": os_env},
        headers=headers,
        stream=True,
    )
    if response.status_code != 200:
        print_error(response)
        return None
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, tag + ".tar.gz")
    with open(path, "wb") as f:
        for chunk in response.iter_content(chunk_size=1024 * 1024):
            f.write(chunk)
    with tarfile.open(path, "r:gz") as tar:
        tar.extractall(out_dir)
    return path


def publish(base, component, tag, results_tarball):
    response = requests.put(
        base_url(base) + "component",
        json={"component": component, "results_tarball": results_tarball, "tag": tag},
        headers=identity_headers(),
    )
    print(response.status_code)
    print(response.text)
    return 200 <= response.status_code < 300


def image(base, dockerfile, os_env):
    # The scripts send the name of a file in the shared dockerfiles/ folder.
    # `wait` is a query parameter the scripts do not know; the test adds it
    # so the answer is the build's end, as the scripts' log would show later.
    response = requests.post(
        base_url(base) + "image?wait=true",
        json={"dockerfile": dockerfile, "arch": os_env},
        headers=identity_headers(),
    )
    body = response.json()  # the answer is JSON in every case
    print(json.dumps(body))
    return response.status_code == 200 and body.get("status") == "success"


def check_json_accept(base, component, tag):
    with tempfile.TemporaryDirectory() as d:
        path = download(
            base, component, tag, "null", d, {"accept": "application/json"}
        )
        assert path is not None, "the download with accept: application/json failed"
        with open(path, "rb") as f:
            data = f.read()
        assert data[:2] == b"\x1f\x8b", "not a gzip file: %r" % data[:64]
        try:
            json.loads(data)
        except ValueError:
            pass
        else:
            raise AssertionError("got JSON instead of the tarball: %r" % data[:200])
        with tarfile.open(path, "r:gz") as tar:
            names = tar.getnames()
        assert names, "the tarball is empty"
        assert all(n == tag or n.startswith(tag + "/") for n in names), names
        print("ok: gzip tarball of %d bytes with %d entries" % (len(data), len(names)))
    return True


def main(argv):
    usage = (
        "usage: client.py download BASE COMPONENT TAG ARCH DIR\n"
        "       client.py publish BASE COMPONENT TAG PATH\n"
        "       client.py check-json-accept BASE COMPONENT TAG\n"
        "       client.py image BASE DOCKERFILE_NAME ARCH"
    )
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "download" and len(args) == 5:
        path = download(*args)
        if path is None:
            return 1
        print("downloaded %s" % path)
        return 0
    if cmd == "publish" and len(args) == 4:
        return 0 if publish(*args) else 1
    if cmd == "image" and len(args) == 3:
        return 0 if image(*args) else 1
    if cmd == "check-json-accept" and len(args) == 3:
        return 0 if check_json_accept(*args) else 1
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
