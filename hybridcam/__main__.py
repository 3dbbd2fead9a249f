import sys

from hybridcam.cli import main

sys.exit(main())
