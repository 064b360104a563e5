import sys

from sleepyllama.proxy.program import main

sys.exit(main())
