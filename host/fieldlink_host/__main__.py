import sys

from fieldlink_host.cli import main

sys.exit(main())
