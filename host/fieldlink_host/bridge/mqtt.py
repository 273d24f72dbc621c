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
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from fieldlink_host.bridge.config import MqttConfig
from fieldlink_host.bridge.store import Store

log = logging.getLogger("fieldlink.bridge.mqtt")

MessageHandler = Callable[[str, bytes], None]
#: the publisher thread sleeps until 1/WAKE_DIV of the window (or all of it) is acknowledged: waking for
#: every PUBACK costs thread switches, waiting for much of the window leaves the window empty (measured)
WAKE_DIV = 16
#: outbox rows read per query
BATCH = 1000


class Publisher:
    def __init__(self, cfg: MqttConfig, store: Store, *, client_id: str, will_topic: str,
                 subscriptions: list[str], on_message: MessageHandler,
                 on_connect: Callable[[], None] | None = None, trim: bool = True) -> None:
        """``trim``: delete published outbox rows when the cursor is saved (False: the bridge process does
        it, so a publisher process spends its core on MQTT)."""
        self.cfg = cfg
        self.trim = trim
        self.store = store
        self.host, self.port, tls = cfg.endpoint()
        self.will_topic = will_topic
        self.subscriptions = subscriptions
        self._on_message = on_message
        self._on_connect_cb = on_connect
        self.connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.cursor = store.get_meta("published")      # every outbox id <= cursor was PUBACKed
        self._saved_cursor = self.cursor
        self._gen = 0          # bumped by each (re)connect: the publisher thread restarts after the cursor
        self._acks = 0         # PUBACKs seen (paho's thread); the publisher thread is woken at _wake_at
        self._wake_at = 0
        self._sent: deque[tuple[int, mqtt.MQTTMessageInfo]] = deque()   # in flight, in publish order
        self._sent_upto = self.cursor
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
        # the publisher thread keeps the window itself (at most ``inflight`` unacknowledged): paho's own
        # limit re-scans every in-flight message on each PUBACK (Client._update_inflight), which costs more
        # per message than the rest of the publish path together
        self.client.max_inflight_messages_set(0)
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
        self._advance()
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
        self._gen += 1          # what was in flight is published again from the cursor
        self.connected.set()
        if self._on_connect_cb is not None:
            self._on_connect_cb()
        self._wake.set()

    def _disconnected(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if self.connected.is_set():
            self.stats["disconnects"] += 1
        self.connected.clear()

    def _published(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any = None, props: Any = None) -> None:
        # paho marks the message's MQTTMessageInfo published when this returns; the publisher thread reads
        # those flags in publish order, so nothing here needs a lock or a mid -> outbox id map. Only wake it
        # once enough of the window came back (or all of it), not per PUBACK.
        self._acks += 1
        if self._acks >= self._wake_at:
            self._wake.set()

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
            if self.trim:
                self.store.save_published(cur)
            else:
                self.store.set_meta("published", cur)
            self._saved_cursor = cur

    def _advance(self) -> None:
        """Move the cursor over the acknowledged head of ``_sent`` (publisher thread, or after it ended)."""
        sent = self._sent
        n = 0
        while sent and sent[0][1].is_published():
            self.cursor = sent.popleft()[0]
            n += 1
        if not sent:
            self.cursor = max(self.cursor, self._sent_upto)
        self.stats["published"] += n

    def _run(self) -> None:
        """Publish the outbox in id order. Rows are read in batches (one query per ``BATCH`` rows), each
        is one paho ``publish`` of its stored, pre-encoded payload; ``_sent`` holds (id, MQTTMessageInfo)
        in publish order and the cursor moves over its acknowledged head."""
        sent = self._sent
        rows: deque[tuple[int, str, bytes, int]] = deque()
        gen = -1
        last_save = time.monotonic()
        depth = self.cfg.inflight
        publish = self.client.publish
        ok = mqtt.MQTT_ERR_SUCCESS
        while not self._stop.is_set():
            self._advance()
            now = time.monotonic()
            if now - last_save > 0.5:
                self._save_cursor()
                last_save = now
            if not self.connected.is_set():
                self._wait(0.2, 0)
                continue
            if gen != self._gen:        # (re)connected: everything after the cursor goes again
                gen = self._gen
                if self._sent_upto > self.cursor:
                    self.stats["republished"] += self._sent_upto - self.cursor
                sent.clear()
                rows.clear()
                self._sent_upto = self.cursor
            room = depth - len(sent)
            if room > 0 and not rows:
                rows.extend(self.store.outbox_after(self._sent_upto, BATCH))
            if room <= 0 or not rows:
                # woken by notify() (new rows) or once a quarter of the window (or all of it) is back
                self._wait(0.2, max(1, min(len(sent), depth // WAKE_DIV)))
                continue
            for _ in range(min(room, len(rows))):
                oid, topic, payload, retain = rows.popleft()
                info = publish(topic, payload, 1, bool(retain))
                if info.rc != ok:
                    # the connection is gone: the reconnect republishes from the cursor (same payloads,
                    # same ids: at least once)
                    self.stats["publish_errors"] += 1
                    rows.clear()
                    break
                sent.append((oid, info))
                self._sent_upto = oid

    def _wait(self, timeout: float, acks: int) -> None:
        if acks:
            self._wake_at = self._acks + acks
        self._wake.wait(timeout)
        self._wake.clear()
