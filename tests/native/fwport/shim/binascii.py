# The test port has no binascii module (extmod/): unhexlify from the core's bytes.fromhex.
def unhexlify(s):
    return bytes.fromhex(s)
