#!/usr/bin/python3
"""Writes the user-data corpus of sysconfig/tests/cloudinit_oracle.rs into this directory.

Each case is NAME.user-data, with NAME.meta-data beside it. Documents are made the way
producers make them: dumped by PyYAML (yaml.safe_dump, block style with its folding of
long scalars at width 80, and default_flow_style=True), hand-written cloud-config as the
cloud-init documentation shows it, MIME made by `cloud-init devel make-mime` and by
Python's email package, gzip'd user-data, and NoCloud seeds made by `cloud-localds`
(NAME.cidata.vfat and NAME.cidata.iso, from NAME.user-data and NAME.meta-data).
Run it with /usr/bin/python3 (Debian's python3-yaml and cloud-init, cloud-image-utils).
The network documents live in network/ and are not made here.
"""
import base64
import gzip
import os
import re
import subprocess
import sys
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

# crypt.crypt("secret", "$6$saltsalt$"), made once.
HASH = (
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77"
    "vwPZN.Pq.H91p5hVO1"
)
RSA = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7n2b8Q5v1m0bq4m9yJ3Vt3p3Q0o0f2r8X6T5nA9cWl"
    "Q1xWb4v5QdYz8H3m2kZt6u0QyYc4n1p7sLw9Ee0jR2fK5uV3qB8aT1hN6xZ4yC0dM7gS9oP2iL5kJ8wE3"
    "rF6tY1uI4oA7sD0fG3hJ6kL9zX2cV5bN8mQ1wE4rT7yU0iO3pA6sD9fG2hJ5kL8zX1cV4bN7mQ0wE3rT6y"
    "U9iO2pA5sD8fG1hJ4kL7zX0cV3bN6mQ9wE2rT5yU8iO1pA4sD7fG0hJ3kL6zX9cV2bN5mQ8wE1rT4yU7i"
    " ann@laptop.example.org"
)
ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3m0Qd0sL1r8n5bYk2Wc7vT4xP9aE6uJ3hF0gD1sZc bob@desk"
ED2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF0aZ9yX8wV7uT6sR5qP4oN3mL2kJ1iH0gF9eD8cB7aA ops@bastion"
FROM = 'from="10.0.0.0/8,192.168.1.1",no-agent-forwarding ' + ED2

CASES = {}


def case(name, text, meta=None):
    CASES[name] = (text if isinstance(text, bytes) else text.encode(), meta)


def dump(doc, **kw):
    return "#cloud-config\n" + yaml.safe_dump(doc, **kw)


def md(name, **extra):
    d = {"instance-id": "iid-" + name, "local-hostname": name + "-md"}
    d.update(extra)
    return yaml.safe_dump(d)


BASIC = {
    "hostname": "web1",
    "fqdn": "web1.example.org",
    "users": [
        "default",
        {
            "name": "ann",
            "gecos": "Ann Admin",
            "groups": ["staff", "adm"],
            "shell": "/usr/bin/bash",
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "lock_passwd": False,
            "hashed_passwd": HASH,
            "ssh_authorized_keys": [RSA, ED],
        },
        {"name": "bob", "uid": 1200, "primary_group": "staff", "groups": "adm, sys"},
    ],
    "ssh_authorized_keys": [ED2],
    "write_files": [
        {"path": "/etc/motd", "content": "Welcome to web1\n", "permissions": "0644"},
        {"path": "/opt/app/app.conf", "content": "listen = 8080\nworkers = 4\n",
         "owner": "ann:staff", "permissions": "0640"},
    ],
}

# PyYAML block style; long keys fold at width 80 into continued plain scalars.
case("pyyaml-block", dump(BASIC))
case("pyyaml-flow", dump(BASIC, default_flow_style=True))
case("pyyaml-flow-width40", dump(BASIC, default_flow_style=True, width=40))
case("pyyaml-block-sorted-unicode", dump(dict(BASIC, hostname="caf\u00e9"), allow_unicode=True))

case("users-name-list", dump({"users": ["default", "ann", "bob"]}))
case("users-comma-string", "#cloud-config\nusers: ann, bob ,carl\n")
case("users-name-keyed", """#cloud-config
users:
  ann: true
  bob:
    groups: [adm]
    shell: /usr/bin/ksh
  carl: false
  dora: yes
""")
case("user-old-string", "#cloud-config\nuser: ann\nusers: [default, bob]\n")
case("user-old-mapping", dump({"user": {"name": "ann", "groups": "staff", "lock_passwd": False,
                                        "passwd": HASH}}))
case("groups-forms", dump({"groups": ["admins", {"devs": ["ann", "bob"]}, {"ops": "carl"}],
                           "users": ["ann", {"name": "bob", "groups": ["devs", "cloud"]}]}))
case("groups-string", "#cloud-config\ngroups: admins, devs\n")
case("groups-mapping", "#cloud-config\ngroups:\n  devs: [ann, bob]\n  ops: carl\n")
case("create-groups-false", dump({"users": [{"name": "ann", "groups": ["newgrp"],
                                             "create_groups": False}]}))
case("passwd-unlocked", dump({"users": [{"name": "ann", "passwd": HASH, "lock_passwd": False}]}))
case("passwd-locked-default", dump({"users": [{"name": "ann", "passwd": HASH}]}))
case("hashed-over-passwd", dump({"users": [{"name": "ann", "passwd": "$1$old$x",
                                            "hashed_passwd": HASH, "lock_passwd": False}]}))
case("plain-text-passwd", dump({"users": [{"name": "ann", "plain_text_passwd": "hunter2",
                                           "lock_passwd": False}, "bob"]}))
case("sudo-forms", dump({"users": [
    {"name": "ann", "sudo": ["ALL=(ALL) NOPASSWD:/usr/sbin/svcadm", "ALL=(ALL) ALL"]},
    {"name": "bob", "sudo": False},
    {"name": "carl", "sudo": None},
]}))
case("keys-string-with-commas", """#cloud-config
users:
  - name: ops
    ssh_authorized_keys: %s
""" % FROM)
case("keys-quoted-multiline", """#cloud-config
users:
  - name: ops
    ssh_authorized_keys:
      - "%s"
""" % RSA.replace(" ann@", "\n        ann@"))
case("keys-mapping", dump({"users": [{"name": "ann", "ssh_authorized_keys": {"laptop": RSA, "desk": ED}}]}))
case("root-keys-and-cloud-keys", dump({"users": ["default", "ann"], "ssh_authorized_keys": [ED]}),
     md("root-keys-and-cloud-keys", **{"public-keys": {"laptop": RSA, "ops": [ED2, ""]}}))
case("cloud-keys-string", dump({"users": [{"name": "ann"}]}),
     md("cloud-keys-string", **{"public-keys": RSA + "\n" + ED + "\n"}))
case("cloud-keys-list-users-replace", dump({"users": [{"name": "bob", "ssh_authorized_keys": [ED]}]}),
     md("cloud-keys-list-users-replace", **{"public-keys": [RSA]}))
case("allow-public-keys-false", dump({"allow_public_ssh_keys": False, "ssh_authorized_keys": [ED]}),
     md("allow-public-keys-false", **{"public-keys": [RSA]}))
case("root-in-users", dump({"users": [{"name": "root", "ssh_authorized_keys": [ED], "lock_passwd": False}]}),
     md("root-in-users", **{"public-keys": [RSA]}))
case("meta-data-only-keys", b"", md("meta-data-only-keys", **{"public-keys": [RSA, ED]}))

case("write-files-encodings", dump({"write_files": [
    {"path": "/etc/b64", "encoding": "b64", "content": base64.b64encode(b"b64 text\n").decode()},
    {"path": "/etc/base64", "encoding": "base64", "content": base64.b64encode(b"\x00\x01\xfe\xff").decode()},
    {"path": "/etc/gz", "encoding": "gz", "content": gzip.compress(b"gz bytes\n", mtime=0)},
    {"path": "/etc/gzip", "encoding": "gzip", "content": gzip.compress(b"gzip bytes\n", mtime=0)},
    {"path": "/etc/gzb64", "encoding": "gz+b64",
     "content": base64.b64encode(gzip.compress(b"gz+b64\n", mtime=0)).decode()},
    {"path": "/etc/gzbase64", "encoding": "gz+base64",
     "content": base64.b64encode(gzip.compress(b"gz+base64\n", mtime=0)).decode()},
    {"path": "/etc/gzipb64", "encoding": "gzip+b64",
     "content": base64.b64encode(gzip.compress(b"gzip+b64\n", mtime=0)).decode()},
    {"path": "/etc/gzipbase64", "encoding": "GZIP+BASE64",
     "content": base64.b64encode(gzip.compress(b"gzip+base64\n", mtime=0)).decode()},
    {"path": "/etc/plain", "encoding": "text/plain", "content": "plain\n"},
]}))
case("write-files-binary", dump({"write_files": [
    {"path": "/var/lib/blob", "content": bytes(range(256)), "permissions": "0600"},
    {"path": "/etc/utf8", "content": "h\u00e9llo\n".encode()},
]}))
case("write-files-permissions", """#cloud-config
write_files:
  - path: /etc/octal-int
    content: a
    permissions: 0600
  - path: /etc/octal-string
    content: b
    permissions: '0755'
  - path: /etc/decimal-int
    content: c
    permissions: 644
  - path: /etc/bad
    content: d
    permissions: rwxr-x
  - path: /etc/zero-o
    content: e
    permissions: '0o640'
  - path: /etc/default
    content: f
""")
case("write-files-append-defer-owner", """#cloud-config
users: [default, ann]
write_files:
  - path: /etc/crontab
    content: "15 * * * * root /opt/bin/job\\n"
    append: true
  - path: /export/home/ann/.profile
    content: "export PATH=$PATH:/opt/bin\\n"
    owner: ann:staff
    defer: true
  - path: /etc/owned
    content: x
    owner: ann
  - path: /etc/owned-none
    content: y
    owner: "none:staff"
  - path: /etc/append-string
    content: z
    append: "yes"
    defer: "off"
""")
case("write-files-source", """#cloud-config
write_files:
  - path: /etc/fetched
    source:
      uri: https://example.org/motd
      headers: {Authorization: Basic abc}
    content: fallback
""")
case("write-files-paths", """#cloud-config
write_files:
  - path: etc/relative
    content: r
  - path: /etc/../etc/./dotted
    content: d
  - content: no path here
  - just a string
  - path: /etc/unknown-encoding
    encoding: rot13
    content: u
  - path: /etc/bad-b64
    encoding: b64
    content: "aGk"
""")

case("archive", dump([
    "#cloud-config\nhostname: from-archive\n",
    {"content": "users: [ann]\n"},
    {"type": "text/x-shellscript", "content": "#!/bin/sh\necho hi\n"},
    {"content": "#!/bin/sh\necho guessed\n", "filename": "guessed.sh"},
]).replace("#cloud-config\n", "#cloud-config-archive\n", 1))
case("jsonp", '#cloud-config-jsonp\n[{"op": "add", "path": "/hostname", "value": "patched"}]\n')
case("jsonp-bad-patch", '#cloud-config-jsonp\n[{"op": "remove", "path": "/hostname"}]\n')
case("script-only", "#!/bin/sh\necho hello\n")
case("include", "#include\nhttps://example.org/user-data\n")
case("boothook", "#cloud-boothook\n#!/bin/sh\necho boot\n")
case("jinja", "## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n")
case("empty", b"")
case("empty-cloud-config", "#cloud-config\n")
case("not-cloud-config", "hostname: nope\n")
case("bom", "\ufeff#cloud-config\nhostname: with-bom\n")
case("header-case", "#Cloud-Config\nhostname: casey\n")
case("crlf", "#cloud-config\r\nhostname: crlf\r\nusers:\r\n  - name: ann\r\n    groups: staff\r\n")
case("gzip-whole", gzip.compress(dump({"hostname": "zipped", "users": ["ann"]}).encode(), mtime=0))
case("hostname-forms-fqdn", "#cloud-config\nfqdn: node7.example.org\n")
case("hostname-forms-dotted", "#cloud-config\nhostname: node8.example.org\n")
case("hostname-forms-both", "#cloud-config\nhostname: short9\nfqdn: long9.example.org\n")
case("hostname-from-meta-data", "#cloud-config\nusers: [ann]\n", md("hostname-from-meta-data"))
case("yaml11-scalars", """#cloud-config
users:
  - name: ann
    lock_passwd: no
    passwd: %s
    uid: "1001"
  - name: bob
    lock_passwd: off
    passwd: %s
write_files:
  - path: /etc/yes-append
    content: "1"
    append: yes
    permissions: 0o644
""" % (HASH, HASH))
case("anchors-and-merge", """#cloud-config
base: &base
  shell: /usr/bin/bash
  groups: [staff]
  lock_passwd: false
users:
  - <<: *base
    name: ann
  - <<: *base
    name: bob
    shell: /usr/bin/ksh
""")
case("unsupported-keys", dump({"hostname": "pk", "packages": ["git"], "runcmd": [["ls"]],
                               "package_update": True}))
case("folded-block-scalars", """#cloud-config
write_files:
  - path: /etc/folded
    content: >
      one
      two

      three
  - path: /etc/literal-keep
    content: |+
      kept

  - path: /etc/literal-strip
    content: |-
      stripped
""")
case("multiline-quoted", '#cloud-config\nusers:\n  - name: ann\n    gecos: "Ann\n      Admin"\n    shell: \'/usr/bin/\n      bash\'\n')
case("bad-users", dump({"users": [{"name": "Bad Name"}, {"name": "ok"}, {"name": "carl", "uid": "abc"},
                                  42, {"name": "dora", "shell": 5}]}))
case("users-wrong-type", "#cloud-config\nusers: 3\nhostname: still-here\n")
case("malformed-yaml", "#cloud-config\nusers: [ann\nhostname: x\n")
case("malformed-list", "#cloud-config\n- ann\n- bob\n")
case("malformed-second-document", "#cloud-config\nhostname: a\n---\nhostname: b\n")


def make_mime(name, attachments):
    """`cloud-init devel make-mime -a FILE:TYPE ...`."""
    args = ["cloud-init", "devel", "make-mime"]
    tmp = []
    for i, (text, ctype) in enumerate(attachments):
        p = os.path.join(HERE, ".part-%s-%d" % (name, i))
        with open(p, "w") as f:
            f.write(text)
        tmp.append(p)
        args += ["-a", "%s:%s" % (p, ctype)]
    out = subprocess.run(args, check=True, capture_output=True).stdout
    for p in tmp:
        os.unlink(p)
    # make-mime picks a random boundary and names each part after its file; keep both
    # stable so that a run of this script changes only what changed.
    m = re.search(rb'boundary="([^"]+)"', out)
    if m:
        out = out.replace(m.group(1), ("===============%s==" % name).encode())
    for i in range(len(attachments)):
        out = out.replace((".part-%s-%d" % (name, i)).encode(), ("part-%d" % i).encode())
    return out


def main():
    case("mime-config-and-script", make_mime("mime1", [
        (dump({"hostname": "mime1", "users": ["ann"]}), "cloud-config"),
        ("#!/bin/sh\necho hi\n", "x-shellscript"),
    ]))
    case("mime-two-configs", make_mime("mime2", [
        (dump({"hostname": "first", "users": ["ann"], "ssh_authorized_keys": [ED]}), "cloud-config"),
        (dump({"hostname": "second", "write_files": [{"path": "/etc/two", "content": "2\n"}]}),
         "cloud-config"),
    ]))
    case("mime-utf8-base64", make_mime("mime3", [
        (dump({"users": [{"name": "ann", "gecos": "Ann M\u00fcller"}]}, allow_unicode=True),
         "cloud-config"),
    ]))
    case("mime-config-then-jsonp", make_mime("mime5", [
        (dump({"hostname": "before", "users": ["ann"]}), "cloud-config"),
        ('#cloud-config-jsonp\n[{"op": "replace", "path": "/hostname", "value": "after"},'
         ' {"op": "add", "path": "/users/-", "value": "bob"}]\n', "cloud-config-jsonp"),
    ]))
    case("mime-archive-part", make_mime("mime4", [
        ("#cloud-config-archive\n- {content: 'hostname: via-archive'}\n", "cloud-config-archive"),
    ]))
    msg = MIMEMultipart()
    gz = MIMEApplication(gzip.compress(dump({"hostname": "gzpart", "users": ["bob"]}).encode(),
                                       mtime=0), "x-gzip")
    gz.add_header("Content-Disposition", "attachment", filename="config.gz")
    msg.attach(gz)
    plain = MIMEText("#cloud-config\nwrite_files:\n- {path: /etc/p, content: p}\n", "plain")
    msg.attach(plain)
    text = msg.as_string().replace(msg.get_boundary(), "===============1234567890==")
    case("mime-gzip-part-python-email", text)

    for name, (text, meta) in sorted(CASES.items()):
        with open(os.path.join(HERE, name + ".user-data"), "wb") as f:
            f.write(text)
        with open(os.path.join(HERE, name + ".meta-data"), "w") as f:
            f.write(meta if meta is not None else md(name))
    # NoCloud seeds as cloud-localds makes them, FAT and ISO9660.
    for name, fmt, ext in (
        ("pyyaml-block", "vfat", "vfat"),
        ("root-keys-and-cloud-keys", "iso", "iso"),
        ("gzip-whole", "vfat", "vfat"),
        ("mime-two-configs", "iso", "iso"),
    ):
        out = os.path.join(HERE, "%s.cidata.%s" % (name, ext))
        subprocess.run(["cloud-localds", "-f", fmt, out,
                        os.path.join(HERE, name + ".user-data"),
                        os.path.join(HERE, name + ".meta-data")], check=True)
    print("%d user-data documents" % len(CASES), file=sys.stderr)


main()
