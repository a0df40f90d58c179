import sys

from pylvs.cli import main

sys.exit(main())
