import sys

from acceptance.run import main

sys.exit(main())
