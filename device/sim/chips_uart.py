# Virtual board: fake Peacefair PZEM-004T v3.0 Modbus-RTU slave for simboard.attach_uart().
# uart_rx(request) returns the reply bytes (b"" = no reply, like a real slave that ignores a frame
# with a bad CRC or another address). Registers per the PZEM-004T V3.0 manual:
#   input 0x0000 voltage 0.1 V, 0x0001/2 current 0.001 A (low, high word), 0x0003/4 power 0.1 W,
#   0x0005/6 energy 1 Wh, 0x0007 frequency 0.1 Hz, 0x0008 power factor 0.01, 0x0009 alarm 0xFFFF/0
#   holding 0x0001 power alarm threshold W, 0x0002 Modbus address
# Functions 0x03, 0x04, 0x06, 0x42 (reset energy); errors reply function | 0x80 with code
# 0x01 illegal function, 0x02 illegal address, 0x03 illegal data.


def crc16_modbus(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _frame(body):
    c = crc16_modbus(body)
    return bytes(body) + bytes((c & 0xFF, c >> 8))


class PZEM004T:
    def __init__(self, address=0x01, voltage=230.0, current=0.0, power=0.0, energy=0, frequency=50.0,
                 power_factor=1.0, alarm_threshold=2300):
        self.address = address
        self.voltage = voltage
        self.current = current
        self.power = power
        self.energy = energy
        self.frequency = frequency
        self.power_factor = power_factor
        self.alarm_threshold = alarm_threshold
        self.silent = False       # never answer (unplugged meter)
        self.corrupt_replies = 0  # the next N replies carry a wrong CRC
        self.requests = []        # every request frame received, for tests

    def input_registers(self):
        cur = int(round(self.current * 1000))
        pw = int(round(self.power * 10))
        en = int(self.energy)
        alarm = 0xFFFF if self.power >= self.alarm_threshold else 0
        return [int(round(self.voltage * 10)) & 0xFFFF, cur & 0xFFFF, (cur >> 16) & 0xFFFF,
                pw & 0xFFFF, (pw >> 16) & 0xFFFF, en & 0xFFFF, (en >> 16) & 0xFFFF,
                int(round(self.frequency * 10)) & 0xFFFF, int(round(self.power_factor * 100)) & 0xFFFF,
                alarm]

    def _reply(self, body):
        f = bytearray(_frame(body))
        if self.corrupt_replies:
            self.corrupt_replies -= 1
            f[-1] ^= 0xFF
        return bytes(f)

    def _error(self, func, code):
        return self._reply(bytes((self.address, func | 0x80, code)))

    def uart_rx(self, data):
        data = bytes(data)
        self.requests.append(data)
        if self.silent or len(data) < 4:
            return b""
        if crc16_modbus(data[:-2]) != data[-2] | (data[-1] << 8):
            return b""
        addr, func = data[0], data[1]
        if addr not in (self.address, 0xF8, 0x00):
            return b""
        if func in (0x03, 0x04) and len(data) == 8:
            start = (data[2] << 8) | data[3]
            count = (data[4] << 8) | data[5]
            regs = self.input_registers() if func == 0x04 else [0, self.alarm_threshold, self.address]
            lo = 0 if func == 0x04 else 1
            if count < 1 or start < lo or start + count > len(regs):
                return self._error(func, 0x02)
            body = bytearray((self.address, func, 2 * count))
            for r in regs[start:start + count]:
                body.append(r >> 8)
                body.append(r & 0xFF)
            return self._reply(body)
        if func == 0x06 and len(data) == 8:
            reg = (data[2] << 8) | data[3]
            val = (data[4] << 8) | data[5]
            if reg == 0x0001:
                self.alarm_threshold = val
            elif reg == 0x0002 and 0x01 <= val <= 0xF7:
                self.address = val
            else:
                return self._error(func, 0x03 if reg == 0x0002 else 0x02)
            return self._reply(bytes((self.address,)) + data[1:6])
        if func == 0x42 and len(data) == 4:
            self.energy = 0
            return self._reply(bytes((self.address, 0x42)))
        return self._error(func, 0x01)
