"""Run the sidecar server: ``python -m edge_sdk.sidecar --socket PATH --bundle DIR``."""

import sys

from edge_sdk.sidecar.command import main

sys.exit(main())
