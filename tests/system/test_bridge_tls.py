"""The bridge against a Mosquitto that requires TLS with client certificates and a password: the password
comes from the environment, telemetry arrives, the retained bridge state is online; a SIGKILLed bridge
leaves the last will (offline); a wrong password never blocks the serial side (messages still stored
and acknowledged)."""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bridge_support import MOSQUITTO, ScriptedGateway, Subscriber, free_port, tel, wait_until  # noqa: E402

ROOT_T = "fieldlink/v1/farm"


def _cert(tmp: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
          ca: bool = False, ip: str | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(subj).issuer_name(issuer[0].subject if issuer else subj)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    cert = b.sign(issuer[1] if issuer else key, hashes.SHA256())
    (tmp / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return cert, key


def test_tls_client_certs_password_last_will_and_refusing_broker(tmp_path: Path) -> None:
    ca = _cert(tmp_path, "ca", None, ca=True)
    _cert(tmp_path, "server", ca, ip="127.0.0.1")
    _cert(tmp_path, "client", ca)
    pw = tmp_path / "passwd"
    pw.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "fieldlink", "s3cret-pw"], check=True)
    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\ncafile {tmp_path}/ca.pem\ncertfile {tmp_path}/server.pem\n"
                    f"keyfile {tmp_path}/server.key\nrequire_certificate true\npassword_file {pw}\n"
                    f"allow_anonymous false\npersistence false\nuser {getpass.getuser()}\n")
    broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gw = ScriptedGateway(tmp_path)
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(f'port = "{gw.path}"\ndb = "{tmp_path}/t.db"\nbridge_id = "tls"\n[mqtt]\n'
                   f'url = "mqtts://127.0.0.1:{port}"\nusername = "fieldlink"\nca = "{tmp_path}/ca.pem"\n'
                   f'cert = "{tmp_path}/client.pem"\nkey = "{tmp_path}/client.key"\nkeepalive = 5\n')
    sub = None
    procs: list[subprocess.Popen[str]] = []
    try:
        wait_until(lambda: broker.poll() is None and _listening(port), 15, "TLS broker")
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-sub", clean_session=False)
        c.tls_set(ca_certs=str(tmp_path / "ca.pem"), certfile=str(tmp_path / "client.pem"),
                  keyfile=str(tmp_path / "client.key"), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.username_pw_set("fieldlink", "s3cret-pw")
        sub = Subscriber.__new__(Subscriber)
        _attach(sub, c, port, [f"{ROOT_T}/#"])

        def start(password: str) -> subprocess.Popen[str]:
            env = {**os.environ, "FIELDLINK_BRIDGE_MQTT_PASSWORD": password}
            p = subprocess.Popen([sys.executable, "-m", "fieldlink_host", "bridge", "--config", str(cfg)],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(p)
            return p

        p = start("s3cret-pw")
        wait_until(lambda: any(m.get("t") == "hello" for m in gw.host_msgs), 30, "hello")
        for q in range(1, 6):
            gw.send(tel("020000000001", 1, q, 20.0 + q))
        wait_until(lambda: len(sub.json(lambda t: t.endswith("/telemetry/sht"))) >= 5, 30, "telemetry over TLS")
        wait_until(lambda: {"state": "online"} in [x for _, x in sub.json(lambda t: t == f"{ROOT_T}/bridge/state")],
                   30, "bridge online")
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        wait_until(lambda: [x for _, x in sub.json(lambda t: t == f"{ROOT_T}/bridge/state")][-1] == {"state": "offline"},
                   30, "last will")
        out = p.stdout.read() if p.stdout else ""
        assert "s3cret-pw" not in out
        # a broker that refuses us (wrong password): the serial side keeps storing and acknowledging
        p2 = start("wrong")
        top = gw.s
        for q in range(6, 26):
            gw.send(tel("020000000001", 1, q, 20.0))
        wait_until(lambda: gw.acked >= top + 20, 30, "acks without a broker")
        con = sqlite3.connect(str(tmp_path / "t.db"))
        try:
            assert con.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 25
        finally:
            con.close()
        p2.send_signal(signal.SIGTERM)
        out2 = p2.communicate(timeout=20)[0]
        assert p2.returncode == 0 and "wrong" not in out2, out2
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if sub is not None:
            sub.close()
        gw.close()
        broker.terminate()
        broker.wait(10)


def _listening(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def _attach(sub: Subscriber, c: mqtt.Client, port: int, topics: list[str]) -> None:
    """A Subscriber around a client already configured for TLS."""
    import threading
    sub.msgs = []
    sub.lock = threading.Lock()
    sub.connected = threading.Event()
    sub.c = c
    c.on_message = sub._on
    c.on_connect = lambda cl, u, f, rc, p=None: ([cl.subscribe(t, qos=1) for t in topics], sub.connected.set())
    c.connect("127.0.0.1", port, 30)
    c.loop_start()
    wait_until(sub.connected.is_set, 15, "TLS subscriber")
    json.dumps({})  # keep json imported for readers of the payloads above
