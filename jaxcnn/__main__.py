import sys

from jaxcnn.cli import main

sys.exit(main())
