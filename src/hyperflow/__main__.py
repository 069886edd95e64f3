import sys

from hyperflow.cli import main

sys.exit(main())
