"""MQTT side of the bridge: publishes the SQLite outbox in order with QoS 1, receives commands.

The publisher thread reads the outbox after a cursor and publishes while connected, with at most
``inflight`` unacknowledged messages. The durable cursor (``meta.published``) only moves past a message
once the broker's PUBACK for it and for everything before it arrived; after a disconnect publishing
restarts after the cursor, so a message may reach a subscriber twice (same ``id`` in the payload) but
never not at all. The serial side never waits for any of this.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from fieldlink_host.bridge.config import MqttConfig
from fieldlink_host.bridge.store import Store

log = logging.getLogger("fieldlink.bridge.mqtt")

MessageHandler = Callable[[str, bytes], None]


class Publisher:
    def __init__(self, cfg: MqttConfig, store: Store, *, client_id: str, will_topic: str,
                 subscriptions: list[str], on_message: MessageHandler,
                 on_connect: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.host, self.port, tls = cfg.endpoint()
        self.will_topic = will_topic
        self.subscriptions = subscriptions
        self._on_message = on_message
        self._on_connect_cb = on_connect
        self.connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}           # paho mid -> outbox id
        self._early: set[int] = set()
        self.cursor = store.get_meta("published")      # every outbox id <= cursor was PUBACKed
        self._sent_upto = self.cursor
        self._saved_cursor = self.cursor
        self.stats = {"published": 0, "republished": 0, "connects": 0, "disconnects": 0, "publish_errors": 0,
                      "rx": 0}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=True)
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password)
        if tls:
            self.client.tls_set(ca_certs=cfg.ca, certfile=cfg.cert, keyfile=cfg.key,
                                cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.will_set(will_topic, '{"state": "offline"}', qos=1, retain=True)
        self.client.max_inflight_messages_set(cfg.inflight)
        self.client.reconnect_delay_set(1, 4)
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.on_publish = self._published
        self.client.on_message = self._message
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="fl-mqtt-pub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` on the bridge state (a clean stop, so no last will) and disconnect."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.connected.is_set():
            try:
                info = self.client.publish(self.will_topic, '{"state": "offline"}', qos=1, retain=True)
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self._save_cursor()
        self.client.disconnect()
        self.client.loop_stop()

    def notify(self) -> None:
        """New rows in the outbox."""
        self._wake.set()

    def backlog(self) -> int:
        return self.store.outbox_pending(self.cursor)

    # ------------------------------------------------------------------ paho callbacks (paho's thread)
    def _connected(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("mqtt: broker refused the connection: %s", rc)
            return
        self.stats["connects"] += 1
        for sub in self.subscriptions:
            client.subscribe(sub, qos=1)
        client.publish(self.will_topic, '{"state": "online"}', qos=1, retain=True)
        with self._lock:
            self._inflight = {k: v for k, v in self._inflight.items() if k < 0}
            self._early.clear()
            if self._sent_upto > self.cursor:
                self.stats["republished"] += self._sent_upto - self.cursor
            self._sent_upto = self.cursor
        self.connected.set()
        if self._on_connect_cb is not None:
            self._on_connect_cb()
        self._wake.set()

    def _disconnected(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if self.connected.is_set():
            self.stats["disconnects"] += 1
        self.connected.clear()

    def _published(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any = None, props: Any = None) -> None:
        with self._lock:
            if self._inflight.pop(mid, None) is None:
                self._early.add(mid)   # PUBACK before publish() returned and the mid was recorded
                return
            self._acked_locked()
        self._wake.set()

    def _acked_locked(self) -> None:
        self.stats["published"] += 1
        self.cursor = (min(self._inflight.values()) - 1) if self._inflight else max(self.cursor, self._sent_upto)

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.stats["rx"] += 1
        try:
            self._on_message(msg.topic, bytes(msg.payload))
        except Exception:  # a consumer bug must not kill paho's network thread
            log.exception("mqtt: handler failed for %s", msg.topic)

    # ------------------------------------------------------------------ publisher thread
    def _save_cursor(self) -> None:
        cur = self.cursor
        if cur != self._saved_cursor:
            self.store.set_meta("published", cur)
            self.store.trim_outbox(cur)
            self._saved_cursor = cur

    def _run(self) -> None:
        last_save = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_save > 0.5:
                self._save_cursor()
                last_save = time.monotonic()
            if not self.connected.is_set():
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            with self._lock:
                room = self.cfg.inflight - len(self._inflight)
                after = self._sent_upto
            if room <= 0:
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            rows = self.store.outbox_after(after, room)
            if not rows:
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            for oid, topic, payload, retain in rows:
                if not self.connected.is_set():
                    break
                # never call paho while holding our lock: paho's thread holds its callback lock when it
                # calls _published, which takes ours (lock-order deadlock)
                with self._lock:
                    self._sent_upto = oid
                    self._inflight[-oid] = oid   # placeholder keeps the cursor below oid until recorded
                info = self.client.publish(topic, payload, qos=1, retain=bool(retain))
                with self._lock:
                    del self._inflight[-oid]
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        self.stats["publish_errors"] += 1
                        self._sent_upto = oid - 1
                        break
                    if info.mid in self._early:
                        self._early.discard(info.mid)
                        self._acked_locked()
                    else:
                        self._inflight[info.mid] = oid
