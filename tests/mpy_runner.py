# Runs the named test functions of one device test module under MicroPython and prints result markers
# that tests/conftest.py parses: "@@FL BEGIN name", "@@FL PASS name", "@@FL FAIL name".
import sys


def main():
    modname = sys.argv[1]
    names = sys.argv[2:]
    mod = __import__(modname)
    for name in names:
        print("@@FL BEGIN " + name)
        fn = getattr(mod, name, None)
        if fn is None:
            print("no such test function " + name)
            print("@@FL FAIL " + name)
            continue
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report any failure of the test
            sys.print_exception(e)
            print("@@FL FAIL " + name)
        else:
            print("@@FL PASS " + name)
    print("@@FL END")


main()
