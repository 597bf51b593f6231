"""What cloud-init (its own installed modules) makes of one NoCloud seed.

Reads JSON on stdin: a list of {"user_data": BASE64 or null, "meta_data": TEXT or null}.
Prints a JSON list, one entry per seed: the host name, users, groups, root's keys, files and the part types
cloud-init has no handler for, as cloud-init's code computes them:
cloudinit.user_data.UserDataProcessor and handlers.cloud_config.CloudConfigPartHandler
(parts and their merge), cloudinit.util.load_yaml (YAML), ug_util.normalize_users_groups
and the argument handling of Distro.add_user / create_user (users, groups, passwords,
sudo, keys), cc_ssh (root's keys: the cloud's and the top-level ones),
sources.normalize_pubkey_data (meta-data public-keys), cc_write_files (files) and
util.get_hostname_fqdn (host name). Nothing is written to the system.
"""
import base64
import json
import logging
import os
import sys
import tempfile

logging.disable(logging.CRITICAL)

from cloudinit import helpers, sources, ssh_util, util  # noqa: E402
from cloudinit import user_data as ud_mod  # noqa: E402
from cloudinit.config import cc_write_files  # noqa: E402
from cloudinit.distros import ug_util  # noqa: E402
from cloudinit.handlers import CONTENT_START  # noqa: E402
from cloudinit.handlers.cloud_config import CloudConfigPartHandler  # noqa: E402

import yaml  # noqa: E402

CLOUD_CONFIG = "text/cloud-config"
JSONP = "text/cloud-config-jsonp"


class NoDefaultUser:
    """An illumos image: no distribution default user."""

    def get_default_user(self):
        return {}


class Cloud:
    def __init__(self, hostname):
        self.hostname = hostname

    def get_hostname(self, fqdn=False, metadata_only=False):
        return sources.DataSourceHostname(self.hostname, False)


def parts_and_config(raw):
    tmp = tempfile.mkdtemp()
    paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
    proc = ud_mod.UserDataProcessor(paths)
    includes = []
    # An #include part makes cloud-init fetch URLs; record it instead of fetching.
    proc._do_include = lambda payload, append_msg: includes.append("#include")
    msg = proc.process(raw)
    handler = CloudConfigPartHandler(paths)
    handler.cloud_fn = None
    handler.handle_part(None, CONTENT_START, None, None, None, None)
    unsupported = list(includes)
    malformed = False
    have_config = False
    for part in msg.walk():
        if ud_mod.is_skippable(part):
            continue
        ctype = part.get_content_type()
        payload = util.fully_decoded_payload(part)
        if not payload:
            # Empty user-data: nothing to say about it.
            continue
        if ctype == JSONP:
            try:
                handler.handle_part(
                    None, ctype, part.get_filename() or "part", payload, None, dict(part)
                )
            except Exception:
                # handlers.run_part logs a failing handler and goes on.
                pass
            have_config = True
        elif ctype == CLOUD_CONFIG:
            # sysconfig stops on what cloud-init only warns about: a YAML error or a
            # cloud-config that is not a mapping.
            try:
                doc = yaml.safe_load(payload)
                if doc is not None and not isinstance(doc, dict):
                    malformed = True
            except yaml.YAMLError:
                malformed = True
            handler.handle_part(
                None, ctype, part.get_filename() or "part", payload, None, dict(part)
            )
            have_config = True
        else:
            unsupported.append(ctype)
    cfg = handler.cloud_buf if have_config else {}
    return cfg or {}, unsupported, malformed


def written(keys):
    """The authorized_keys lines ssh_util.setup_user_keys writes for these keys."""
    parser = ssh_util.AuthKeyLineParser()
    return sorted(set(str(parser.parse(str(k))) for k in keys))


def user_meaning(name, kw):
    out = {}
    for key, field in (
        ("gecos", "gecos"),
        ("homedir", "home"),
        ("shell", "shell"),
        ("primary_group", "group"),
    ):
        val = kw.get(key)
        # add_user: only non-empty strings reach useradd.
        if val and isinstance(val, str):
            out[field] = val
    if "uid" in kw and kw["uid"] is not None:
        out["uid"] = int(str(kw["uid"]))
    create = []
    groups = kw.get("groups")
    if groups:
        if isinstance(groups, str):
            groups = groups.split(",")
        groups = [g.strip() for g in groups]
        out["groups"] = [g for g in groups if g]
        create = list(out["groups"])
        if kw.get("primary_group"):
            create.append(kw["primary_group"])
    if not kw.get("create_groups", True):
        create = []
    password = None
    if kw.get("passwd") and isinstance(kw.get("passwd"), str):
        password = kw["passwd"]
    if kw.get("hashed_passwd"):
        password = kw["hashed_passwd"]
    lock = bool(kw.get("lock_passwd", True))
    # The password field sysconfig aims at: NP when password login is off.
    out["password_field"] = "NP" if lock else password
    sudo = kw.get("sudo")
    if sudo:
        out["sudo"] = [str(r) for r in sudo] if isinstance(sudo, (list, tuple)) else [sudo]
    keys = kw.get("ssh_authorized_keys")
    if keys is not None:
        if isinstance(keys, str):
            keys = [keys]
        elif isinstance(keys, dict):
            keys = list(keys.values())
        out["keys"] = written(keys)
    return out, create


def meaning(req):
    raw = base64.b64decode(req["user_data"]) if req.get("user_data") is not None else b""
    md = util.load_yaml(req.get("meta_data") or "", default={}) or {}
    cfg, unsupported, malformed = parts_and_config(raw)
    result = {"malformed": malformed, "unsupported": unsupported}
    if malformed:
        return result

    host = util.get_hostname_fqdn(cfg, Cloud(md.get("local-hostname"))).hostname
    result["hostname"] = host.split(".")[0] if host else None

    try:
        users, groups = ug_util.normalize_users_groups(cfg, NoDefaultUser())
    except TypeError as e:
        # cc_users_groups stops here and creates nobody; sysconfig skips the entry.
        result["users_error"] = str(e)
        users, groups = {}, {}
    all_groups = {g: sorted(m) for g, m in groups.items()}
    out_users = {}
    for name, kw in users.items():
        try:
            meaning, create = user_meaning(name, kw)
        except ValueError:
            # useradd --uid would fail for this user.
            out_users[name] = {"error": True}
            continue
        out_users[name] = meaning
        for g in create:
            all_groups.setdefault(g, [])
    result["users"] = out_users
    result["groups"] = all_groups

    keys = []
    if util.get_cfg_option_bool(cfg, "allow_public_ssh_keys", True):
        keys = sources.normalize_pubkey_data(md.get("public-keys")) or []
    if "ssh_authorized_keys" in cfg:
        keys.extend(cfg["ssh_authorized_keys"])
    result["root_keys"] = written(keys)

    files = []
    os.chdir("/")
    skipped = []
    for i, f in enumerate(cfg.get("write_files", []) or []):
        # Each entry as cloud-init handles it alone: an entry that makes cc_write_files
        # fail (not a mapping, content that does not decode) is one sysconfig skips.
        if not isinstance(f, dict):
            skipped.append(i)
            continue
        path = f.get("path")
        if not path:
            skipped.append(i)
            continue
        entry = {"path": os.path.abspath(path)}
        try:
            contents = cc_write_files.extract_contents(
                f.get("content", ""),
                cc_write_files.canonicalize_extraction(f.get("encoding")),
            )
            if isinstance(contents, str):
                contents = contents.encode("utf-8")
            if not isinstance(contents, bytes):
                raise TypeError("content")
        except Exception:
            skipped.append(i)
            continue
        entry["content"] = base64.b64encode(contents).decode()
        entry["mode"] = cc_write_files.decode_perms(
            f.get("permissions"), cc_write_files.DEFAULT_PERMS
        )
        u, g = util.extract_usergroup(f.get("owner", "root:root"))
        entry["owner"] = u or "root"
        entry["group"] = g or "root"
        entry["append"] = util.get_cfg_option_bool(f, "append")
        entry["defer"] = util.get_cfg_option_bool(f, "defer", False)
        files.append(entry)
    result["files"] = files
    result["files_skipped"] = skipped
    return result


json.dump([meaning(r) for r in json.load(sys.stdin)], sys.stdout)
