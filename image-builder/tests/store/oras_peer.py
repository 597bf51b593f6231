"""The ORAS Python SDK (PyPI `oras`) as the other side of the store's interop tests.

  oras_peer.py pull HOST:PORT/REPO:TAG OUTDIR
      pull the artifact, check every layer's bytes against its digest and size in the
      manifest, and print {"digest", "artifactType", "annotations", "files": {name: sha256}}
  oras_peer.py push HOST:PORT/REPO:TAG FILE...
      push the files as an artifact (plain HTTP: the registry is on 127.0.0.1)
"""

import hashlib
import json
import os
import sys

import oras.client


def main():
    cmd, target = sys.argv[1], sys.argv[2]
    host = target.split("/", 1)[0]
    client = oras.client.OrasClient(hostname=host, insecure=True)
    if cmd == "pull":
        outdir = sys.argv[3]
        manifest = client.get_manifest(target)
        client.pull(target=target, outdir=outdir)
        files = {}
        for layer in manifest["layers"]:
            name = layer["annotations"]["org.opencontainers.image.title"]
            data = open(os.path.join(outdir, name), "rb").read()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            if digest != layer["digest"] or len(data) != layer["size"]:
                sys.exit(f"{name}: {digest} ({len(data)} bytes) does not match the manifest")
            files[name] = digest
        print(json.dumps({
            "artifactType": manifest.get("artifactType"),
            "annotations": manifest.get("annotations", {}),
            "files": files,
        }))
    elif cmd == "push":
        os.chdir(os.path.dirname(os.path.abspath(sys.argv[3])))
        names = [os.path.basename(f) for f in sys.argv[3:]]
        resp = client.push(target=target, files=names,
                           manifest_annotations={"pushed-by": "oras-py"})
        if resp.status_code not in (200, 201):
            sys.exit(f"push answered {resp.status_code}")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
