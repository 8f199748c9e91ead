import sys

from wgllm.cli import main

sys.exit(main())
