# ruff: noqa: I001, B007, UP031 - MicroPython example code, kept as the docs write it
# The docs' asyncio echo server (library/espnow.rst, "Supporting asyncio").
import asyncio

import aioespnow
import network

network.WLAN(network.WLAN.IF_STA).active(True)
e = aioespnow.AIOESPNow()  # Returns AIOESPNow enhanced with async support
e.active(True)


async def echo_server(e):
    async for mac, msg in e:
        print("Echo:", msg)
        try:
            await e.asend(mac, msg)
        except OSError as err:
            if len(err.args) > 1 and err.args[1] == 'ESP_ERR_ESPNOW_NOT_FOUND':
                e.add_peer(mac)
                await e.asend(mac, msg)

print("serving")
asyncio.run(echo_server(e))
