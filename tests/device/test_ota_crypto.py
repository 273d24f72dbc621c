# Ed25519 verify and SHA-512 of fieldlink.ota against RFC 8032 section 7.1 test vectors (written here
# from the RFC) and FIPS 180-4 example digests. Runs under CPython and MicroPython; under CPython the
# vectors are also re-derived with `cryptography` (tests/host/test_ota_crosscheck.py cross-checks random
# keys and messages in both runtimes).
import binascii

from devtest import IS_MPY
from fieldlink.ota import ed25519
from fieldlink.ota.sha512 import Sha512

h = binascii.unhexlify

# RFC 8032 7.1: (secret key, public key, message, signature)
RFC = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]

# FIPS 180-4 / NIST examples
SHA512_ABC = ("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
              "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
SHA512_EMPTY = ("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")
SHA512_2BLOCK = ("8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
                 "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909")
MSG_2BLOCK = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
              b"mnopqrstnopqrstu")


def test_sha512_fips_examples():
    assert Sha512(b"abc").hexdigest() == SHA512_ABC
    assert Sha512(b"").hexdigest() == SHA512_EMPTY
    assert Sha512(MSG_2BLOCK).hexdigest() == SHA512_2BLOCK
    s = Sha512()
    for i in range(0, len(MSG_2BLOCK), 7):  # incremental updates across block boundaries
        s.update(MSG_2BLOCK[i:i + 7])
    assert s.hexdigest() == SHA512_2BLOCK
    if not IS_MPY:
        import hashlib
        for n in (0, 1, 111, 112, 113, 127, 128, 129, 255, 256, 1000):
            data = bytes((i * 7 + n) & 0xFF for i in range(n))
            assert Sha512(data).digest() == hashlib.sha512(data).digest(), n


def test_rfc8032_vectors_verify():
    for _sk, pk, msg, sig in RFC:
        assert ed25519.verify(h(pk), h(msg), h(sig))


def test_rfc8032_vectors_match_cryptography():
    if IS_MPY:  # no `cryptography` in MicroPython; the CPython run of this test covers it
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    for sk, pk, msg, sig in RFC:
        key = Ed25519PrivateKey.from_private_bytes(h(sk))
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert raw == h(pk)
        assert key.sign(h(msg)) == h(sig)


def test_every_flipped_bit_of_signature_message_and_key_is_rejected():
    _sk, pk, msg, sig = RFC[2]
    pk, msg, sig = h(pk), h(msg), h(sig)
    for i in range(64):
        bad = bytearray(sig)
        bad[i] ^= 1 << (i % 8)
        assert not ed25519.verify(pk, msg, bytes(bad)), i
    for i in range(32):
        bad = bytearray(pk)
        bad[i] ^= 1 << (i % 8)
        assert not ed25519.verify(bytes(bad), msg, sig), i
    for i in range(len(msg)):
        bad = bytearray(msg)
        bad[i] ^= 0x80
        assert not ed25519.verify(pk, bytes(bad), sig)
    assert not ed25519.verify(pk, msg + b"\x00", sig)
    assert not ed25519.verify(pk, msg, sig[:63])
    assert not ed25519.verify(pk[:31], msg, sig)


def test_malleable_s_plus_l_is_rejected():
    # [S + L]B == [S]B, so only the S < L check refuses this second encoding of a valid signature
    _sk, pk, msg, sig = RFC[0]
    sig = h(sig)
    s = int.from_bytes(sig[32:], "little") + ed25519.L
    assert s < (1 << 256)
    forged = sig[:32] + s.to_bytes(32, "little")
    assert not ed25519.verify(h(pk), h(msg), forged)


def test_non_canonical_and_off_curve_keys_are_rejected():
    _sk, pk, msg, sig = RFC[1]
    # y >= p (non-canonical encoding of a small y)
    y = ed25519.P + 1
    assert ed25519.decode_point(y.to_bytes(32, "little")) is None
    # y = 2 gives x^2 = 3/(4d+1), not a square mod p: no point
    assert ed25519.decode_point((2).to_bytes(32, "little")) is None
    # x = 0 with the sign bit set (y = 1 is the neutral point, x = 0)
    assert ed25519.decode_point((1 | (1 << 255)).to_bytes(32, "little")) is None
    assert ed25519.decode_point((1).to_bytes(32, "little")) == (0, 1)
    assert not ed25519.verify((2).to_bytes(32, "little"), h(msg), h(sig))


def test_base_point_round_trip():
    enc = ed25519.encode_point(ed25519.BX, ed25519.BY, 1)
    # RFC 8032: B encodes as 0x58 followed by 0x66 * 31 (y = 4/5, x even)
    assert enc == b"\x58" + b"\x66" * 31
    assert ed25519.decode_point(enc) == (ed25519.BX, ed25519.BY)
