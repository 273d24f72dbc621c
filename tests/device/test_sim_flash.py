# esp32.Partition flash semantics, OTA boot/rollback and NVS commit semantics on the virtual board.
import esp32
import simboard
from devtest import raises, tmpdir

APP_IMAGE = b"\xe9" + b"\x01" * 255  # begins with the ESP image magic byte


def _boot(d):
    """(Re)start the board in directory d, like the launcher does after a reset."""
    simboard.reset()
    return simboard.setup(dir=d)


def _reset_and_boot(d):
    try:
        simboard.board().end(simboard.HARD_RESET)
    except SystemExit as e:
        assert e.args[0] == simboard.EXIT_HARD_RESET
    return _boot(d)


def test_erased_flash_reads_ff_and_writes_only_clear_bits():
    d = tmpdir("flash")
    _boot(d)
    p = esp32.Partition("vfs")
    buf = bytearray(16)
    p.readblocks(3, buf)
    assert buf == bytearray(b"\xff" * 16)
    p.writeblocks(3, b"\xf0\x0f\xaa\x55", 8)  # program without erase
    p.writeblocks(3, b"\x3c\xff\xff\x00", 8)  # can only clear more bits
    out = bytearray(4)
    p.readblocks(3, out, 8)
    assert out == bytearray(bytes([0xF0 & 0x3C, 0x0F, 0xAA, 0x00]))
    assert p.ioctl(6, 3) == 0  # erase block 3
    p.readblocks(3, out, 8)
    assert out == bytearray(b"\xff" * 4)
    p.writeblocks(4, b"\x00" * 4096)
    p.writeblocks(4, b"\x12" * 4096)  # no offset: erase then write
    blk = bytearray(4096)
    p.readblocks(4, blk)
    assert blk == bytearray(b"\x12" * 4096)
    # survives a restart of the board process
    _boot(d)
    p = esp32.Partition("vfs")
    p.readblocks(4, blk)
    assert blk[:2] == bytearray(b"\x12\x12")


def test_ioctl_info_and_bounds():
    _boot(tmpdir("ioctl"))
    p = esp32.Partition("vfs")
    t, sub, addr, size, label, enc = p.info()
    assert (t, label, enc) == (esp32.Partition.TYPE_DATA, "vfs", False)
    assert sub == 0x81 and addr == 0x4F0000 and size == 0x310000
    assert p.ioctl(4, 0) == size // 4096
    assert p.ioctl(5, 0) == 4096
    assert p.ioctl(1, 0) == 0
    e = raises(OSError, p.readblocks, size // 4096, bytearray(1))
    assert e.args[1] == "ESP_ERR_INVALID_SIZE"
    assert raises(OSError, esp32.Partition, "nope").args[0] == 2
    apps = esp32.Partition.find(esp32.Partition.TYPE_APP)
    assert [a.info()[4] for a in apps] == ["ota_0", "ota_1"]
    assert [x.info()[4] for x in esp32.Partition.find(esp32.Partition.TYPE_DATA, label="nvs")] == ["nvs"]
    p2 = esp32.Partition("vfs", block_size=512)
    assert p2.ioctl(4, 0) == size // 512


def test_in_memory_flash_without_board_dir():
    simboard.reset()
    p = esp32.Partition("ota_1")
    p.writeblocks(0, b"\x0f" * 8, 0)
    out = bytearray(8)
    p.readblocks(0, out)
    assert out == bytearray(b"\x0f" * 8)


def test_set_boot_then_rollback_when_not_marked_valid():
    d = tmpdir("rollback")
    _boot(d)
    run = esp32.Partition(esp32.Partition.RUNNING)
    assert run.info()[4] == "ota_0"
    nxt = run.get_next_update()
    assert nxt.info()[4] == "ota_1"
    e = raises(OSError, nxt.set_boot)  # empty slot: not a valid image
    assert e.args[1] == "ESP_ERR_OTA_VALIDATE_FAILED"
    nxt.writeblocks(0, APP_IMAGE)
    nxt.set_boot()
    assert esp32.Partition(esp32.Partition.BOOT).info()[4] == "ota_1"
    _reset_and_boot(d)
    run = esp32.Partition(esp32.Partition.RUNNING)
    assert run.info()[4] == "ota_1"
    assert run._ota_state() == "pending"
    # the new app crashes / resets before confirming itself
    _reset_and_boot(d)
    assert esp32.Partition(esp32.Partition.RUNNING).info()[4] == "ota_0"
    assert esp32.Partition("ota_1")._ota_state() == "aborted"
    _reset_and_boot(d)
    assert esp32.Partition(esp32.Partition.RUNNING).info()[4] == "ota_0"


def test_mark_valid_keeps_the_new_slot():
    d = tmpdir("valid")
    _boot(d)
    nxt = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
    nxt.writeblocks(0, APP_IMAGE)
    nxt.set_boot()
    _reset_and_boot(d)
    assert esp32.Partition(esp32.Partition.RUNNING).info()[4] == "ota_1"
    esp32.Partition.mark_app_valid_cancel_rollback()
    for _ in range(3):
        _reset_and_boot(d)
        assert esp32.Partition(esp32.Partition.RUNNING).info()[4] == "ota_1"
    assert esp32.Partition(esp32.Partition.RUNNING).get_next_update().info()[4] == "ota_0"


def test_nvs_commit_survives_reset_uncommitted_is_lost():
    d = tmpdir("nvs")
    _boot(d)
    n = esp32.NVS("app")
    n.set_i32("boots", 7)
    n.set_blob("cfg", b"\x01\x02\x03")
    n.commit()
    n.set_i32("boots", 8)  # not committed
    n.set_i32("temp", -5)
    assert n.get_i32("boots") == 8
    _reset_and_boot(d)
    n = esp32.NVS("app")
    assert n.get_i32("boots") == 7
    e = raises(OSError, n.get_i32, "temp")
    assert e.args == (-0x1102, "ESP_ERR_NVS_NOT_FOUND")
    buf = bytearray(8)
    assert n.get_blob("cfg", buf) == 3 and buf[:3] == bytearray(b"\x01\x02\x03")
    assert raises(OSError, n.get_blob, "cfg", bytearray(2)).args[1] == "ESP_ERR_NVS_INVALID_LENGTH"
    assert raises(OSError, n.get_i32, "cfg").args[1] == "ESP_ERR_NVS_NOT_FOUND"  # wrong type
    assert raises(OSError, n.set_i32, "cfg", 1).args[1] == "ESP_ERR_NVS_TYPE_MISMATCH"
    n.erase_key("cfg")
    assert raises(OSError, n.erase_key, "cfg").args[1] == "ESP_ERR_NVS_NOT_FOUND"
    n.commit()
    assert raises(OSError, esp32.NVS("other").get_i32, "boots").args[1] == "ESP_ERR_NVS_NOT_FOUND"
    assert raises(OSError, n.set_i32, "a_key_that_is_too_long", 1).args[1] == "ESP_ERR_NVS_KEY_TOO_LONG"
    raises(OverflowError, n.set_i32, "big", 1 << 31)
    _reset_and_boot(d)
    assert raises(OSError, esp32.NVS("app").get_blob, "cfg", bytearray(8)).args[1] == "ESP_ERR_NVS_NOT_FOUND"


def test_nvs_runs_out_of_space():
    _boot(tmpdir("nvsfull"))
    n = esp32.NVS("big")
    n.set_blob("a", b"x" * 8000)
    e = raises(OSError, n.set_blob, "b", b"y" * 8000)  # 16 KiB partition: 3 usable pages
    assert e.args[1] == "ESP_ERR_NVS_NOT_ENOUGH_SPACE"
