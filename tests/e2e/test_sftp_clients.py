"""Real SFTP clients against the real daemon: each upload ends in a COMPLETED, CSV-matched batch.

Clients: OpenSSH ``sftp``, ``rclone`` (sftp remote; Debian's 1.60 sends the malformed WRITE
packets that ``sftp_server/framing.py`` repairs), ``lftp`` (``mirror -R``), ``curl``
(``sftp://`` via libssh2) and paramiko uploading the way WinSCP does (``.filepart`` then rename,
only for files above 100 KB). Each client first lists ``/`` and then enters a campaign that has
no landing folder yet, as lftp and rclone do. A client that is not installed skips its test;
``scripts/bootstrap.sh`` installs them (Debian packages openssh-client, rclone, lftp, curl).

Campaigns run with ``--no-auto-process``: the calls stay ``PENDING`` and the pipeline does not
compete for the CPU. A second set of tests kills each client mid-transfer and checks that
nothing of the upload is kept.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from daemon_process import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

AUDIO = ["call-JD002-0930.wav", "JD002 callback 1415.webm", "réclamation 01.ogg"]
MANIFEST = "manifest.csv"
PASSWORD = "client-pass-42"
WINSCP_FILEPART_ABOVE = 100 * 1024
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
OPEN = ("DETECTING", "WAITING_FOR_FILES", "WAITING_FOR_CSV", "PROCESSING")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    proc = DaemonProcess(tmp_path_factory.mktemp("clients"))
    proc.start()
    yield proc
    if proc.proc is not None:
        proc.stop()


def require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed: apt-get install {package} "
                    "(scripts/bootstrap.sh does it)")
    return path


def add_campaign(daemon: DaemonProcess, slug: str, *extra: str) -> None:
    """A campaign with its own user ``slug``; its landing folder does not exist yet."""
    daemon.cli("campaign", "create", slug.title(), "--slug", slug, "--batch-window", "30",
               "--no-auto-process")
    daemon.cli("sftp-user", "add", slug, "--password-stdin", "--campaign", slug, *extra,
               stdin=PASSWORD + "\n")
    assert not (landing(daemon) / slug).exists()


def landing(daemon: DaemonProcess) -> Path:
    return daemon.root / "var" / "landing"


def drop_folder(corpus: Path, tmp_path: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """Three recordings and a manifest naming them, as a telephony system would drop them."""
    folder = tmp_path / "drop"
    folder.mkdir()
    with open(corpus / "csv" / "manifest_clean.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["file_name"] in AUDIO]
    with open(folder / MANIFEST, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for name in AUDIO:
        shutil.copy(corpus / "calls" / name, folder / name)
    return folder, {r["file_name"]: r for r in rows}


def assert_completed_batch(daemon: DaemonProcess, slug: str,
                           rows: dict[str, dict[str, str]]) -> None:
    """One COMPLETED batch holding the manifest and every recording, each matched to its row."""
    closed = wait_for(lambda: [b for b in daemon.json("batch", "list", "--campaign", slug)
                               if b["status"] not in OPEN], 90, f"the batch of {slug} to close")
    assert len(closed) == 1, closed
    batch = daemon.json("batch", "show", closed[0]["id"])
    assert (batch["status"], batch["csv_file"], batch["missing"]) == ("COMPLETED", MANIFEST, [])
    files = {f["name"]: f for f in batch["files"]}
    assert sorted(files) == sorted([*AUDIO, MANIFEST]), batch["files"]
    for name in AUDIO:
        assert files[name]["status"] == "COMPLETED" and files[name]["call_id"], files[name]
        assert files[name]["call_status"] == "PENDING"
        call = daemon.json("call", "show", files[name]["call_id"])
        for key in ("customer_id", "client_reference", "agent_code", "call_date"):
            assert call["metadata"][key] == rows[name][key], (name, key, call["metadata"])


# Uploads -----------------------------------------------------------------------------------

def test_openssh_sftp_upload(daemon, corpus, tmp_path):
    sftp = require("sftp", "openssh-client")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    add_campaign(daemon, "openssh", "--public-key", f"{key}.pub")
    folder, rows = drop_folder(corpus, tmp_path)
    script = tmp_path / "batch.txt"
    script.write_text(f'lcd "{folder}"\nls /\ncd /openssh\n'
                      + "".join(f'put "{name}"\n' for name in [*AUDIO, MANIFEST]))
    result = subprocess.run([sftp, "-b", str(script), "-i", str(key), "-P",
                             str(daemon.sftp_port), *SSH_OPTIONS, "-o", "BatchMode=yes",
                             "openssh@127.0.0.1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert_completed_batch(daemon, "openssh", rows)


def rclone_env(daemon: DaemonProcess, rclone: str, user: str) -> dict[str, str]:
    """An sftp remote named ``t`` configured by environment variables only."""
    obscured = subprocess.run([rclone, "obscure", PASSWORD], capture_output=True, text=True,
                              check=True).stdout.strip()
    remote = {"TYPE": "sftp", "HOST": "127.0.0.1", "PORT": str(daemon.sftp_port), "USER": user,
              "PASS": obscured, "MD5SUM_COMMAND": "none", "SHA1SUM_COMMAND": "none"}
    return {"PATH": os.environ["PATH"], **{f"RCLONE_CONFIG_T_{k}": v for k, v in remote.items()}}


def test_rclone_copy(daemon, corpus, tmp_path):
    rclone = require("rclone", "rclone")
    add_campaign(daemon, "rclone")
    folder, rows = drop_folder(corpus, tmp_path)
    env = rclone_env(daemon, rclone, "rclone")
    config = ["--config", str(tmp_path / "rclone.conf"), "--retries", "1"]
    listing = subprocess.run([rclone, "lsd", *config, "t:"], capture_output=True, text=True,
                             timeout=60, env=env)
    assert listing.returncode == 0 and "rclone" in listing.stdout, listing.stderr
    result = subprocess.run([rclone, "copy", *config, str(folder), "t:rclone"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    # Debian's rclone 1.60 sends WRITEs with trailing bytes: the server repaired them.
    wait_for(lambda: "sftp_write_packets_trimmed username=rclone " in daemon.log(), 20,
             "the server to report the repaired WRITE packets")
    assert_completed_batch(daemon, "rclone", rows)


def lftp_script(daemon: DaemonProcess, user: str, *commands: str) -> list[str]:
    connect = " ".join(["ssh", "-a", "-x", *SSH_OPTIONS])
    setup = ["set sftp:auto-confirm yes", f"set sftp:connect-program '{connect}'",
             "set net:max-retries 1", "set net:timeout 20",
             f"open -u {user},{PASSWORD} -p {daemon.sftp_port} sftp://127.0.0.1"]
    return [require("lftp", "lftp"), "-c", "; ".join([*setup, *commands])]


def test_lftp_mirror_reverse(daemon, corpus, tmp_path):
    command = lftp_script(daemon, "lftp", "cls -1 /", "cd /lftp", "mirror -R --no-perms drop .")
    add_campaign(daemon, "lftp")
    _, rows = drop_folder(corpus, tmp_path)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "/lftp/" in result.stdout.split()  # cls -1 / lists the campaign folder
    assert_completed_batch(daemon, "lftp", rows)


def test_curl_sftp_upload(daemon, corpus, tmp_path):
    curl = require("curl", "curl")
    if "sftp" not in subprocess.run([curl, "-V"], capture_output=True, text=True).stdout:
        pytest.skip("this curl was built without SFTP support")
    add_campaign(daemon, "curl")
    folder, rows = drop_folder(corpus, tmp_path)
    base = f"sftp://127.0.0.1:{daemon.sftp_port}"
    auth = ["-sS", "-k", "-u", f"curl:{PASSWORD}"]  # -k: no known_hosts check
    listing = subprocess.run([curl, *auth, f"{base}/"], capture_output=True, text=True,
                             timeout=60)
    assert listing.returncode == 0 and "curl" in listing.stdout.split(), listing.stderr
    uploads = [arg for name in [AUDIO[0], MANIFEST, *AUDIO[1:]]
               for arg in ("-T", str(folder / name), f"{base}/curl/")]  # CSV in the middle
    result = subprocess.run([curl, *auth, *uploads], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert_completed_batch(daemon, "curl", rows)


def test_paramiko_upload_the_winscp_way(daemon, corpus, tmp_path):
    add_campaign(daemon, "winscp")
    folder, rows = drop_folder(corpus, tmp_path)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=daemon.sftp_port, username="winscp", password=PASSWORD,
                   look_for_keys=False, allow_agent=False)
    with client:
        sftp = client.open_sftp()
        assert sftp.listdir("/") == ["winscp"]
        sftp.chdir("/winscp")
        for name in [MANIFEST, *AUDIO]:  # the small CSV first, under its final name
            local = folder / name
            if local.stat().st_size <= WINSCP_FILEPART_ABOVE:
                sftp.put(str(local), name)
                continue
            sftp.put(str(local), f"{name}.filepart")
            assert f"{name}.filepart" in sftp.listdir(".")
            sftp.utime(f"{name}.filepart", (1_768_000_000, 1_768_000_000))  # keep the mtime
            sftp.rename(f"{name}.filepart", name)
    assert_completed_batch(daemon, "winscp", rows)


# Dropped uploads ---------------------------------------------------------------------------

def killable_upload(client: str, daemon: DaemonProcess, source: Path, tmp_path: Path,
                    slug: str) -> list[str]:
    """A rate-limited upload of ``source`` into ``/slug`` with the named client."""
    if client == "openssh":
        script = tmp_path / "put.txt"
        script.write_text(f'put "{source}" /{slug}/\n')
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / "key")], check=True)
        return [require("sftp", "openssh-client"), "-l", "128", "-b", str(script), "-i",
                str(tmp_path / "key"), "-P", str(daemon.sftp_port), *SSH_OPTIONS,
                "-o", "BatchMode=yes", f"{slug}@127.0.0.1"]
    if client == "rclone":
        return [require("rclone", "rclone"), "copy", "--config", str(tmp_path / "rclone.conf"),
                "--bwlimit", "16k", str(source.parent), f"t:{slug}"]
    if client == "lftp":
        return lftp_script(daemon, slug, "set net:limit-rate 16000", f'put "{source}" -o /{slug}/')
    return [require("curl", "curl"), "-sS", "-k", "-u", f"{slug}:{PASSWORD}",
            "--limit-rate", "16k", "-T", str(source),
            f"sftp://127.0.0.1:{daemon.sftp_port}/{slug}/"]


@pytest.mark.parametrize("client", ["openssh", "rclone", "lftp", "curl"])
def test_killed_client_leaves_nothing(daemon, corpus, tmp_path, client):
    slug = f"drop-{client}"
    source = tmp_path / "big" / AUDIO[0]
    source.parent.mkdir()
    shutil.copy(corpus / "calls" / AUDIO[0], source)
    command = killable_upload(client, daemon, source, tmp_path, slug)
    extra = ["--public-key", str(tmp_path / "key.pub")] if client == "openssh" else []
    add_campaign(daemon, slug, *extra)
    env = rclone_env(daemon, command[0], slug) if client == "rclone" else None
    incoming = daemon.root / "var" / "incoming"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    try:
        wait_for(lambda: list(incoming.glob("*.upload")), 60, f"{client} to open its upload")
        time.sleep(5)  # tens of KiB at the rate limit (held by the server, not yet written)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client and its ssh, mid-transfer
        proc.wait(10)
    discarded = wait_for(lambda: re.search(rf"upload_discarded username={slug} .* bytes=(\d+)",
                                           daemon.log()), 20,
                         f"the server to discard {slug}'s upload")
    assert int(discarded.group(1)) > 0  # it was killed mid-transfer, not before
    assert not list(incoming.glob("*.upload"))
    assert not (landing(daemon) / slug / AUDIO[0]).exists()
    assert daemon.json("batch", "list", "--campaign", slug) == []
