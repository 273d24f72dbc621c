# Virtual-board `aioespnow`: AIOESPNow with arecv/airecv/asend and async iteration.
# Receiving polls the air every POLL_MS while waiting; asend(sync=True) waits for the MAC-level acks
# without blocking the event loop.
import espnow
import simboard

import asyncio

POLL_MS = 5


async def _nap(ms):
    if simboard.IS_MPY:
        await asyncio.sleep_ms(ms)
    else:
        await asyncio.sleep(ms / 1000)


class AIOESPNow(espnow.ESPNow):
    async def arecv(self):
        while not self.any():
            await _nap(POLL_MS)
        return self.recv(0)

    async def airecv(self):
        while not self.any():
            await _nap(POLL_MS)
        return self.irecv(0)

    async def asend(self, mac, msg=None, sync=None):
        if msg is None:
            mac, msg = None, mac
        sync = sync is None or bool(sync)
        c = self._need_active()
        seqs = self._tx(mac, msg)
        if not sync or not seqs:
            c.async_seqs.extend(seqs)
            return True
        radio = c.radio
        start = espnow._ticks_ms()
        while any(radio.acks.get(s) is None for s in seqs):
            if espnow.airlink._ticks_diff(espnow._ticks_ms(), start) > espnow.airlink.ACK_TIMEOUT_MS:
                break
            c.pump(0)
            await _nap(1)
        ok = True
        for s in seqs:
            r = radio.acks.pop(s, None)
            c.tx_responses += 1
            if not r:
                c.tx_failures += 1
                ok = False
        return ok

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.airecv()
